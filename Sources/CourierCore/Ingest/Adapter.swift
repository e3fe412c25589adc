import Synchronization

/// An ordered run of events from one shard, handed to an ``Adapter`` in one call.
public struct Batch: Sendable {
    /// The shard the events come from.
    public let shardID: Int
    /// The events, in the order they were ingested.
    public let events: [RawEvent]
    /// The shard sequence number of the first event; the others follow without gaps.
    public let sequenceStart: UInt64
    /// The producer identity of the bus that formed the batch.
    public let producerNonce: UInt64

    /// Creates a batch.
    public init(shardID: Int, events: [RawEvent], sequenceStart: UInt64, producerNonce: UInt64) {
        self.shardID = shardID
        self.events = events
        self.sequenceStart = sequenceStart
        self.producerNonce = producerNonce
    }

    /// The dedupe id of the event at `index`: `<nonce hex>:<shard>:<sequenceStart>:<index>`.
    /// Resending the batch yields the same ids, so a retried batch is never stored twice.
    public func dedupeID(at index: Int) -> String {
        "\(Hex.encode64(producerNonce)):\(shardID):\(sequenceStart):\(index)"
    }
}

/// An event an adapter stored, as read back by ``Adapter/pollShard(shard:cursor:limit:)``.
public struct IngestedEvent: Sendable, Hashable {
    /// The event.
    public var raw: RawEvent
    /// The shard it was ingested on.
    public var shard: Int
    /// Its shard sequence number.
    public var sequence: UInt64
    /// Its dedupe id.
    public var dedupeID: String
    /// The shard cursor just past this event.
    public var cursor: UInt64

    /// Creates a stored event.
    public init(raw: RawEvent, shard: Int, sequence: UInt64, dedupeID: String, cursor: UInt64) {
        self.raw = raw
        self.shard = shard
        self.sequence = sequence
        self.dedupeID = dedupeID
        self.cursor = cursor
    }
}

/// What one shard poll returned.
public struct ShardPollResult: Sendable {
    /// Events from the cursor on, oldest first.
    public var events: [IngestedEvent]
    /// The cursor to poll from next.
    public var cursor: UInt64
    /// Whether more events were available than returned.
    public var hasMore: Bool
    /// Events between the requested cursor and the first available one that are no longer
    /// retained (0 when the cursor was current).
    public var skipped: UInt64

    /// Creates a result.
    public init(events: [IngestedEvent], cursor: UInt64, hasMore: Bool, skipped: UInt64 = 0) {
        self.events = events
        self.cursor = cursor
        self.hasMore = hasMore
        self.skipped = skipped
    }
}

/// Where an ``IngestBus`` sends its batches.
///
/// The contract:
/// - ``onBatch(_:)`` persists the whole batch atomically and in order, or throws. Errors are
///   ``CourierError``s: `transient`, `backpressure` and `connectionFailed` ones are retryable
///   (`isRetryable`) and the bus retries the same batch, with the same dedupe ids, within its
///   retry budget; `fatal` and `shutdown` ones are not. An adapter must store a retried batch
///   once (by its dedupe ids).
/// - ``pollShard(shard:cursor:limit:)`` reads back what a shard stored, from a cursor.
/// - ``flush()`` returns once everything accepted before it is persisted.
/// - After ``shutdown()``, ``onBatch(_:)`` throws a `shutdown` error.
public protocol Adapter: Sendable {
    /// A short name for logs and stats.
    var name: String { get }
    /// Persists `batch`.
    func onBatch(_ batch: Batch) async throws
    /// Up to `limit` events of `shard` from `cursor` on.
    func pollShard(shard: Int, cursor: UInt64, limit: Int) async throws -> ShardPollResult
    /// A barrier: returns when everything accepted before it is persisted.
    func flush() async throws
    /// Stops accepting batches.
    func shutdown() async
    /// Whether the bus should bound each `onBatch` by its adapter timeout. Adapters that bound
    /// their own I/O (or cannot block) return `false` and save the timer.
    var needsTimeoutGuard: Bool { get }
}

extension Adapter {
    /// By default the bus bounds `onBatch` with its adapter timeout.
    public var needsTimeoutGuard: Bool { true }
}

/// Accepts every batch and stores nothing: the ceiling of the ingest path itself.
public struct NoopAdapter: Adapter {
    private let state = SharedFlag()

    /// Creates a no-op adapter.
    public init() {}

    public var name: String { "noop" }

    public func onBatch(_ batch: Batch) async throws {
        if state.isSet { throw CourierError(.shutdown, "the noop adapter was shut down") }
    }

    public func pollShard(shard: Int, cursor: UInt64, limit: Int) async throws -> ShardPollResult {
        ShardPollResult(events: [], cursor: cursor, hasMore: false)
    }

    public func flush() async throws {}

    public func shutdown() async { state.set() }

    public var needsTimeoutGuard: Bool { false }
}

/// A flag shared between copies of a value type.
final class SharedFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .relaxed) }
}

/// Persists batches through any ``EventProvider`` (the memory provider, JetStream, …): each event
/// is decoded from its wire JSON and published with its dedupe id as message id, so a retried
/// batch is stored once. It also keeps the newest ``retention`` events of each shard in memory,
/// which is what ``pollShard(shard:cursor:limit:)`` reads.
///
/// A batch is stored in order; if an event fails, the batch fails and is retried whole (the
/// events already stored are recognised as duplicates).
public final class ProviderAdapter: Adapter {
    /// The provider events are published through.
    public let provider: any EventProvider
    /// Events kept per shard for polling.
    public let retention: Int

    private struct ShardLog {
        var events: [IngestedEvent] = []
        /// The cursor of `events[0]`.
        var base: UInt64 = 0
        var next: UInt64 = 0
        /// Dedupe ids already logged, so a retried batch is logged once.
        var lastSequence: UInt64?
    }

    private let logs = Mutex<[Int: ShardLog]>([:])
    private let closed = Atomic<Bool>(false)

    /// An adapter over `provider`, keeping `retention` events per shard for polls.
    public init(provider: any EventProvider, retention: Int = 100_000) {
        self.provider = provider
        self.retention = max(1, retention)
    }

    public var name: String { "provider(\(provider.name))" }

    public func onBatch(_ batch: Batch) async throws {
        guard !closed.load(ordering: .relaxed) else {
            throw CourierError(.shutdown, "the provider adapter was shut down")
        }
        for (index, raw) in batch.events.enumerated() {
            let event: Event
            do {
                event = try raw.decoded()
            } catch {
                throw CourierError(
                    .fatal,
                    "event \(index) of shard \(batch.shardID) batch \(batch.sequenceStart) is not event wire JSON: \(error)",
                    input: raw.subject
                )
            }
            do {
                _ = try await provider.publish(event, options: PublishOptions(messageID: batch.dedupeID(at: index)))
            } catch let error as CourierError {
                throw CourierError(
                    error.isRetryable ? .transient : .fatal, error.message, input: error.input,
                    isRetryable: error.isRetryable)
            }
        }
        logs.withLock { logs in
            var log = logs[batch.shardID] ?? ShardLog()
            for (index, raw) in batch.events.enumerated() {
                let sequence = batch.sequenceStart + UInt64(index)
                if let last = log.lastSequence, sequence <= last { continue }  // a retried batch
                log.next += 1
                log.events.append(
                    IngestedEvent(
                        raw: raw, shard: batch.shardID, sequence: sequence, dedupeID: batch.dedupeID(at: index),
                        cursor: log.next)
                )
                log.lastSequence = sequence
            }
            if log.events.count > retention {
                let excess = log.events.count - retention
                log.events.removeFirst(excess)
                log.base += UInt64(excess)
            }
            logs[batch.shardID] = log
        }
    }

    public func pollShard(shard: Int, cursor: UInt64, limit: Int) async throws -> ShardPollResult {
        logs.withLock { logs in
            guard let log = logs[shard] else { return ShardPollResult(events: [], cursor: cursor, hasMore: false) }
            let start = max(cursor, log.base)
            let skipped = start - cursor
            let offset = Int(start - log.base)
            guard offset < log.events.count else {
                return ShardPollResult(events: [], cursor: start, hasMore: false, skipped: skipped)
            }
            let end = min(log.events.count, offset + max(0, limit))
            let events = Array(log.events[offset..<end])
            return ShardPollResult(
                events: events, cursor: events.last?.cursor ?? start, hasMore: end < log.events.count, skipped: skipped)
        }
    }

    public func flush() async throws {}

    public func shutdown() async { closed.store(true, ordering: .relaxed) }
}
