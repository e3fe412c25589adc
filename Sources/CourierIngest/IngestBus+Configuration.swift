public import CourierCore
public import Logging

extension IngestBus {
    /// Ingest settings.
    public struct Configuration: Sendable {
        /// Shards (and worker threads) at start; default: the active processor count.
        public var shards: Int
        /// Slots per shard ring; a power of two.
        public var ringCapacity: Int
        /// When a worker dispatches.
        public var batch: BatchPolicy
        /// What a producer meets when its shard's ring is full.
        public var backpressure: Backpressure
        /// Where batches go.
        public var adapter: any Adapter
        /// The identity stamped on batches.
        public var producerNonce: ProducerNonce
        /// How long one `onBatch` call may take (for adapters that ask for the guard).
        public var adapterTimeout: Duration
        /// Retries of a batch after retryable adapter errors before it is dropped (and counted).
        public var retryBudget: Int
        /// The wait before the first retry; it doubles each time, up to one second.
        public var retryBackoff: Duration
        /// The most shards ``IngestBus/addShards(_:timeout:)`` can reach.
        public var maxShards: Int
        /// Called with each batch the adapter never took, after it was counted as dropped.
        public var onDroppedBatch: (@Sendable (Batch, CourierError) async -> Void)?
        /// Where events the adapter rejects one by one are dead-lettered; `nil` uses the
        /// adapter's handler (its provider's dead letters), else a memory handler of the bus
        /// (``IngestBus/deadLetters``).
        public var deadLetterHandler: (any DlqHandler)? = nil
        /// The bus's name: the `bus` dimension of its swift-metrics (`courier_ingest_*`).
        public var name: String = "ingest"
        /// How long ``IngestBus/run()`` (graceful shutdown of the service) may spend draining.
        public var shutdownDeadline: Duration = .seconds(30)
        /// Where the bus logs.
        public var logger: Logger

        /// Creates a configuration.
        public init(
            shards: Int? = nil,
            ringCapacity: Int = 65_536,
            batch: BatchPolicy = BatchPolicy(),
            backpressure: Backpressure = .block(timeout: .seconds(1)),
            adapter: any Adapter = NoopAdapter(),
            producerNonce: ProducerNonce = .random,
            adapterTimeout: Duration = .seconds(30),
            retryBudget: Int = 5,
            retryBackoff: Duration = .milliseconds(10),
            maxShards: Int = 64,
            onDroppedBatch: (@Sendable (Batch, CourierError) async -> Void)? = nil,
            logger: Logger = Logger(label: "courier.ingest")
        ) {
            self.shards = shards ?? IngestBus.activeProcessorCount
            self.ringCapacity = ringCapacity
            self.batch = batch
            self.backpressure = backpressure
            self.adapter = adapter
            self.producerNonce = producerNonce
            self.adapterTimeout = adapterTimeout
            self.retryBudget = retryBudget
            self.retryBackoff = retryBackoff
            self.maxShards = maxShards
            self.onDroppedBatch = onDroppedBatch
            self.logger = logger
        }

        /// When a shard worker hands a batch over: once it holds `maxEvents`, or `maxDelay`
        /// after it started collecting, whichever comes first.
        public struct BatchPolicy: Sendable, Hashable {
            /// The most events in one batch.
            public var maxEvents: Int
            /// The longest an event waits for its batch to fill.
            public var maxDelay: Duration

            /// Creates a policy (default: 1 000 events or 2 ms). 1 000 is nats-server's limit
            /// for one atomic batch, so by default a batch the JetStream adapter publishes is
            /// stored whole or not at all.
            public init(maxEvents: Int = 1000, maxDelay: Duration = .milliseconds(2)) {
                self.maxEvents = maxEvents
                self.maxDelay = maxDelay
            }
        }

        /// Checks every value, naming the first invalid one.
        public func validate() throws {
            func invalid(_ what: String, _ message: String) -> CourierError {
                CourierError(.invalidConfiguration, "\(what) \(message)", input: what)
            }
            guard maxShards >= 1, maxShards <= 1024 else {
                throw invalid("maxShards", "must be 1…1024, got \(maxShards)")
            }
            guard shards >= 1, shards <= maxShards else {
                throw invalid("shards", "must be 1…\(maxShards), got \(shards)")
            }
            guard ringCapacity >= 2, ringCapacity <= 1 << 26, ringCapacity & (ringCapacity - 1) == 0 else {
                throw invalid("ringCapacity", "must be a power of two from 2 to 2^26, got \(ringCapacity)")
            }
            guard batch.maxEvents >= 1 else { throw invalid("batch.maxEvents", "must be at least 1") }
            guard batch.maxDelay >= .zero else { throw invalid("batch.maxDelay", "must not be negative") }
            guard adapterTimeout > .zero else { throw invalid("adapterTimeout", "must be positive") }
            guard retryBudget >= 0 else { throw invalid("retryBudget", "must not be negative") }
            guard retryBackoff >= .zero else { throw invalid("retryBackoff", "must not be negative") }
            try backpressure.validate()
        }
    }

    /// What a producer meets when its shard's ring is full. Every event the bus drops is
    /// counted in ``IngestStats/eventsDropped``; every event it refuses is counted in
    /// ``IngestStats/eventsRejected`` and reported to the producer as an error.
    public struct Backpressure: Sendable, Hashable, CustomStringConvertible {
        enum Kind: Hashable {
            case dropNewest
            case dropOldest
            case failProducer
            case block(Duration)
            case sample(Double)
        }

        let kind: Kind

        /// Drop the new event (counted as dropped) and throw a non-retryable `backpressure` error.
        public static let dropNewest = Backpressure(kind: .dropNewest)
        /// Evict the oldest waiting event of the shard (counted as dropped) to make room.
        public static let dropOldest = Backpressure(kind: .dropOldest)
        /// Refuse the event with a retryable `backpressure` error; the producer keeps it.
        public static let failProducer = Backpressure(kind: .failProducer)
        /// Wait for room, at most `timeout`; then refuse like ``failProducer``.
        public static func block(timeout: Duration) -> Backpressure { Backpressure(kind: .block(timeout)) }
        /// Keep a `rate` fraction (0 < rate ≤ 1) of the events that meet a full ring, each
        /// evicting the oldest waiting one; drop the rest. Drops are counted, not thrown.
        public static func sample(rate: Double) -> Backpressure { Backpressure(kind: .sample(rate)) }

        public var description: String {
            switch kind {
            case .dropNewest: "dropNewest"
            case .dropOldest: "dropOldest"
            case .failProducer: "failProducer"
            case .block(let timeout): "block(timeout: \(timeout))"
            case .sample(let rate): "sample(rate: \(rate))"
            }
        }

        func validate() throws {
            switch kind {
            case .block(let timeout) where timeout < .zero:
                throw CourierError(.invalidConfiguration, "block timeout must not be negative", input: "backpressure")
            case .sample(let rate) where !(rate > 0 && rate <= 1):
                throw CourierError(
                    .invalidConfiguration, "sample rate must be in (0, 1], got \(rate)", input: "backpressure")
            default: break
            }
        }
    }
}
