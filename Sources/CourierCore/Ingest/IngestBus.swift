public import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The high-throughput front door: producers call a non-blocking ``ingestRaw(_:)`` (or
/// ``ingest(_:)``), events land in per-shard rings by the hash of their subject, and one worker
/// per shard hands ordered batches to an ``Adapter`` that persists or forwards them.
///
/// Guarantees:
/// - events with the same subject (hash) land on the same shard and reach the adapter in the
///   order they were ingested, also across ``addShards(_:timeout:)`` / ``removeShards(_:timeout:)``;
/// - every event is accounted for: after ``shutdown(deadline:)``,
///   `eventsDispatched + eventsDeadLettered + eventsDropped == eventsIngested` (see ``IngestStats``);
/// - one bad event never costs the others: a subject that cannot be stored is refused at
///   ``ingestRaw(_:)``, and an event the adapter rejects is dead-lettered while the rest of its
///   batch is stored;
/// - a retried batch carries the same dedupe ids, so an adapter stores it once.
///
/// ```swift
/// let ingest = try IngestBus(configuration: .init(adapter: ProviderAdapter(provider: provider)))
/// try ingest.ingestRaw(RawEvent(subject: "events.market.tick", bytes: bytes))
/// try await ingest.shutdown()
/// ```
///
/// The hot path takes no lock and allocates nothing: a shard is picked from the cached hash,
/// a slot is claimed with one compare-exchange, and the worker is woken only when a full batch
/// is waiting (otherwise it picks events up within ``Configuration/BatchPolicy/maxDelay``).
/// Workers run on their own threads, never on Swift's cooperative pool.
public final class IngestBus: @unchecked Sendable {
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

            /// Creates a policy (default: 1 024 events or 2 ms).
            public init(maxEvents: Int = 1024, maxDelay: Duration = .milliseconds(2)) {
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

    /// The processors the scheduler lets this process use.
    public static var activeProcessorCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    // MARK: State

    /// Layout word: shard count (bits 0–15), epoch (16–31), resharding (32), shut down (33).
    private let layout = Atomic<UInt64>(0)
    private static let reshardingFlag: UInt64 = 1 << 32
    private static let shutdownFlag: UInt64 = 1 << 33

    /// Rings by shard id; slot `i` is written once, before `table.initialized` passes `i`.
    private let table: RingTable
    private let rings: UnsafeMutablePointer<IngestRing>
    private let workers = Mutex<[Int: ShardWorker]>([:])
    private let rejectedAfterShutdown = Atomic<UInt64>(0)
    /// Events refused at entry for their subject.
    private let rejectedSubjects = Atomic<UInt64>(0)
    /// `<prefix>.` as bytes when the adapter takes subjects under one prefix only.
    private let acceptedPrefix: [UInt8]?
    private let lossyShutdown = Atomic<Bool>(false)
    private let sampleTick = Atomic<UInt64>(0)
    private let control = AsyncLock()
    /// Control operations (flush, reshard, shutdown) wait on their own thread, so producers
    /// blocked on a full ring or a reshard cannot starve them of the cooperative pool.
    private let controlExecutor = BlockingExecutor(threads: 1)

    /// The settings.
    public let configuration: Configuration
    /// Where events the adapter rejected one by one were dead-lettered, with their reasons.
    public let deadLetters: any DlqHandler
    /// The nonce stamped on this bus's batches.
    public let producerNonce: UInt64
    private let sequenceBase: UInt64
    private let wakeMask: Int
    private let sampleEvery: UInt64
    private let blockTimeout: Duration?

    /// Starts a bus with ``Configuration/shards`` workers.
    ///
    /// - Throws: ``CourierError/Code/invalidConfiguration`` naming the bad setting, or the
    ///   nonce file's error.
    public init(configuration: Configuration = Configuration()) throws {
        try configuration.validate()
        self.configuration = configuration
        deadLetters = configuration.deadLetterHandler ?? configuration.adapter.deadLetters ?? MemoryDlqHandler()
        acceptedPrefix = configuration.adapter.subjectPrefix.map { Array(($0 + ".").utf8) }
        (producerNonce, sequenceBase) = try configuration.producerNonce.resolve()
        var interval = 1
        while interval < configuration.batch.maxEvents { interval <<= 1 }
        wakeMask = max(1, interval) - 1
        if case .sample(let rate) = configuration.backpressure.kind {
            sampleEvery = UInt64(max(1, (1 / rate).rounded()))
        } else {
            sampleEvery = 1
        }
        if case .block(let timeout) = configuration.backpressure.kind {
            blockTimeout = timeout
        } else {
            blockTimeout = nil
        }
        table = RingTable(capacity: configuration.maxShards)
        rings = table.rings
        for shard in 0..<configuration.shards {
            (rings + shard).initialize(to: IngestRing(capacity: configuration.ringCapacity, epoch: 0))
        }
        table.initialized.store(configuration.shards, ordering: .releasing)
        layout.store(UInt64(configuration.shards), ordering: .releasing)
        for shard in 0..<configuration.shards { startWorker(shard) }
    }

    deinit {
        // Without a shutdown, what is still waiting is dropped (and counted); the workers keep
        // the ring memory alive until they have exited.
        let count = table.initialized.load(ordering: .acquiring)
        for shard in 0..<count { rings[shard].close() }
        for worker in workers.withLock({ Array($0.values) }) { worker.detach() }
        controlExecutor.shutdown()
    }

    // MARK: Ingesting

    /// Ingests an event, serialising it to wire JSON; returns its shard.
    ///
    /// - Throws: see ``ingestRaw(_:)``.
    @discardableResult
    public func ingest(_ event: Event) throws -> Int {
        try ingestRaw(RawEvent(event))
    }

    /// Ingests a pre-serialised event and returns its shard at once (in `.block` mode, after at
    /// most the block timeout). A normal return means the bus took the event: it will be
    /// dispatched, dead-lettered or counted as dropped, never lost silently.
    ///
    /// - Throws: ``CourierError/Code/invalidSubject`` for a subject that cannot be published (or
    ///   lies outside the adapter's prefix), ``CourierError/Code/backpressure`` when the ring is
    ///   full and the mode refuses or drops this event (`isRetryable` says whether the producer
    ///   should try again), or ``CourierError/Code/shutdown`` after ``shutdown(deadline:)``.
    @discardableResult
    @inline(__always)
    public func ingestRaw(_ event: consuming RawEvent) throws -> Int {
        guard event.hasValidSubject, hasAcceptedPrefix(event) else { throw refuseSubject(event) }
        let word = layout.load(ordering: .acquiring)
        let shard = Int(event.hash % max(1, word & 0xFFFF))
        var pending: RawEvent? = consume event
        if word & (Self.reshardingFlag | Self.shutdownFlag) == 0 {
            let ring = rings[shard]
            if case .enqueued = ring.enqueue(&pending, epoch: (word >> 16) & 0xFFFF) {
                if Int(truncatingIfNeeded: ring.load(.tail)) & wakeMask == 0 { ring.wakeIfSleeping() }
                return shard
            }
        }
        return try ingestSlow(&pending)
    }

    @inline(__always)
    private func hasAcceptedPrefix(_ event: borrowing RawEvent) -> Bool {
        guard let acceptedPrefix else { return true }
        return event.subject.utf8.withContiguousStorageIfAvailable { $0.starts(with: acceptedPrefix) }
            ?? event.subject.utf8.starts(with: acceptedPrefix)
    }

    /// The error for an event whose subject the bus will not take.
    private func refuseSubject(_ event: borrowing RawEvent) -> CourierError {
        rejectedSubjects.add(1, ordering: .relaxed)
        do {
            try Subjects.validate(event.subject)
        } catch let error as CourierError {
            return error
        } catch {}
        let prefix = String(decoding: acceptedPrefix ?? [], as: UTF8.self)
        return CourierError.invalidSubject(
            event.subject, "it is outside '\(prefix)>', the subjects adapter \(configuration.adapter.name) stores")
    }

    /// The ring was full, the layout is changing, or the bus is shut down.
    private func ingestSlow(_ pending: inout RawEvent?) throws -> Int {
        let hash = pending.unsafelyUnwrapped.hash
        let subject = pending.unsafelyUnwrapped.subject
        var deadline: ContinuousClock.Instant?
        var spins = 0
        var evictions = 0
        while true {
            let word = layout.load(ordering: .acquiring)
            if word & Self.shutdownFlag != 0 {
                rejectedAfterShutdown.add(1, ordering: .relaxed)
                throw CourierError(
                    .shutdown, "the ingest bus is shut down; event on '\(subject)' refused", input: subject)
            }
            if word & Self.reshardingFlag != 0 {
                Self.pause(&spins)
                continue
            }
            let shard = Int(hash % (word & 0xFFFF))
            let ring = rings[shard]
            switch ring.enqueue(&pending, epoch: (word >> 16) & 0xFFFF) {
            case .enqueued:
                if Int(truncatingIfNeeded: ring.load(.tail)) & wakeMask == 0 { ring.wakeIfSleeping() }
                return shard
            case .stale:
                Self.pause(&spins)
            case .full:
                switch configuration.backpressure.kind {
                case .dropNewest:
                    ring.add(.droppedOnEntry, 1)
                    throw CourierError(
                        .backpressure,
                        "shard \(shard) is full (\(ring.capacity) events); event on '\(subject)' dropped",
                        input: subject
                    )
                case .failProducer:
                    ring.add(.rejected, 1)
                    throw CourierError(
                        .backpressure,
                        "shard \(shard) is full (\(ring.capacity) events); retry the event on '\(subject)'",
                        input: subject,
                        isRetryable: true
                    )
                case .dropOldest:
                    evictions += 1
                    if evictions > 1000 {  // producers keep refilling the freed slot: give up
                        ring.add(.droppedOnEntry, 1)
                        throw CourierError(
                            .backpressure,
                            "shard \(shard) stays full under other producers; event on '\(subject)' dropped",
                            input: subject)
                    }
                    if ring.dequeue() != nil { ring.add(.evicted, 1) }
                case .sample:
                    if sampleTick.add(1, ordering: .relaxed).newValue % sampleEvery != 0 || evictions > 1000 {
                        ring.add(.droppedOnEntry, 1)
                        throw CourierError(
                            .backpressure,
                            "shard \(shard) is full (\(ring.capacity) events); event on '\(subject)' sampled out",
                            input: subject)
                    }
                    evictions += 1
                    if ring.dequeue() != nil { ring.add(.evicted, 1) }
                case .block:
                    let now = ContinuousClock.now
                    if deadline == nil { deadline = now + (blockTimeout ?? .zero) }
                    if now >= deadline! {
                        ring.add(.rejected, 1)
                        throw CourierError(
                            .backpressure,
                            "shard \(shard) stayed full for \(blockTimeout ?? .zero); event on '\(subject)' refused",
                            input: subject,
                            isRetryable: true
                        )
                    }
                    ring.wake()
                    Self.pause(&spins)
                }
            }
        }
    }

    /// Spins briefly, then yields, then sleeps 50 µs at a time.
    private static func pause(_ spins: inout Int) {
        spins += 1
        if spins < 64 { return }
        if spins < 128 {
            sched_yield()
            return
        }
        var request = timespec(tv_sec: 0, tv_nsec: 50_000)
        nanosleep(&request, nil)
    }

    /// The outcome of ``ingestBatch(_:)``.
    public struct BatchOutcome: Sendable, Hashable {
        /// Events taken.
        public var accepted = 0
        /// Events dropped by the backpressure mode (counted in the stats).
        public var dropped = 0
        /// Events refused (the producer keeps them): their indices.
        public var refused: [Int] = []
    }

    /// Ingests many events; each is handled as by ``ingestRaw(_:)``.
    ///
    /// - Throws: ``CourierError/Code/shutdown`` when the bus is shut down before the first event.
    public func ingestBatch(_ events: [RawEvent]) throws -> BatchOutcome {
        var outcome = BatchOutcome()
        for (index, event) in events.enumerated() {
            do {
                try ingestRaw(event)
                outcome.accepted += 1
            } catch let error as CourierError where error.code == .backpressure && !error.isRetryable {
                outcome.dropped += 1
            } catch let error as CourierError where error.code == .shutdown && index == 0 {
                throw error
            } catch {
                outcome.refused.append(index)
            }
        }
        return outcome
    }

    // MARK: Stats

    /// The counters (lock-free reads; consistent once the bus is quiet).
    public var stats: IngestStats {
        let count = table.initialized.load(ordering: .acquiring)
        var stats = IngestStats()
        for shard in 0..<count {
            let ring = rings[shard]
            let onEntry = ring.load(.droppedOnEntry)
            stats.eventsIngested += ring.enqueuedCount + onEntry
            stats.eventsDropped +=
                onEntry + ring.load(.evicted) + ring.load(.droppedInBatches) + ring.load(.droppedAtShutdown)
            stats.eventsRejected += ring.load(.rejected)
            stats.eventsDispatched += ring.load(.dispatched)
            stats.eventsDeadLettered += ring.load(.deadLettered)
            stats.batchesDispatched += ring.load(.batches)
            stats.batchRetries += ring.load(.retries)
            stats.pending += UInt64(ring.pending)
        }
        stats.eventsRejected +=
            rejectedAfterShutdown.load(ordering: .relaxed) + rejectedSubjects.load(ordering: .relaxed)
        stats.shards = Int(layout.load(ordering: .acquiring) & 0xFFFF)
        stats.shutdownWasLossy = lossyShutdown.load(ordering: .relaxed)
        return stats
    }

    /// The number of shards events are placed on now.
    public var shardCount: Int { Int(layout.load(ordering: .acquiring) & 0xFFFF) }

    // MARK: Workers

    private func startWorker(_ shard: Int) {
        let worker = ShardWorker(
            shard: shard,
            table: table,
            configuration: configuration,
            nonce: producerNonce,
            sequenceStart: workers.withLock { $0[shard]?.nextSequence } ?? sequenceBase,
            deadLetters: deadLetters
        )
        workers.withLock { $0[shard] = worker }
        worker.start()
    }

    // MARK: Flush and shutdown

    /// Returns once every event ingested before the call was handed to the adapter (or
    /// dropped), and the adapter flushed.
    ///
    /// - Throws: ``CourierError/Code/timeout`` after `timeout`, or the adapter's flush error.
    public func flush(timeout: Duration = .seconds(30)) async throws {
        try await withTaskExecutorPreference(controlExecutor) { try await flushOnControlThread(timeout: timeout) }
    }

    private func flushOnControlThread(timeout: Duration) async throws {
        let count = shardCount
        let targets = (0..<count).map { rings[$0].enqueuedCount }
        for shard in 0..<count { rings[shard].wake() }
        try await waitUntil(timeout: timeout, what: "flush") {
            (0..<count).allSatisfy { self.rings[$0].accounted >= targets[$0] }
        } poke: {
            for shard in 0..<count { self.rings[shard].wake() }
        }
        try await configuration.adapter.flush()
    }

    /// Stops taking events, drains every ring into the adapter, flushes and shuts the adapter
    /// down. If `deadline` passes first, what is still waiting is dropped and counted, and
    /// ``IngestStats/shutdownWasLossy`` says so. Calling it again returns the final stats.
    @discardableResult
    public func shutdown(deadline: Duration = .seconds(30)) async -> IngestStats {
        await withTaskExecutorPreference(controlExecutor) { await shutdownOnControlThread(deadline: deadline) }
        return stats
    }

    private func shutdownOnControlThread(deadline: Duration) async {
        await control.run {
            let word = layout.load(ordering: .acquiring)
            if word & Self.shutdownFlag != 0 { return }
            layout.store(word | Self.shutdownFlag, ordering: .releasing)
            let count = Int(word & 0xFFFF)
            for shard in 0..<count { rings[shard].close() }
            let drained =
                (try? await waitUntil(timeout: deadline, what: "shutdown") {
                    (0..<count).allSatisfy { self.rings[$0].unaccounted == 0 }
                } poke: {
                    for shard in 0..<count { self.rings[shard].wake() }
                }) != nil
            let all = workers.withLock { Array($0.values) }
            for worker in all { worker.requestStop(abandon: !drained) }
            for worker in all { await worker.finish() }
            if !drained || (0..<count).contains(where: { rings[$0].load(.droppedAtShutdown) > 0 }) {
                lossyShutdown.store(true, ordering: .relaxed)
                configuration.logger.error(
                    "ingest shutdown deadline passed: undelivered events were dropped", metadata: ["stats": "\(stats)"])
            }
            do {
                try await configuration.adapter.flush()
            } catch {
                configuration.logger.error("adapter flush failed at shutdown", metadata: ["error": "\(error)"])
            }
            await configuration.adapter.shutdown()
        }
    }

    /// Polls `condition` (every 100 µs rising to 5 ms), calling `poke` now and then, until it
    /// holds or `timeout` passes.
    private func waitUntil(
        timeout: Duration,
        what: String,
        _ condition: @escaping () -> Bool,
        poke: @escaping () -> Void
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        var interval = Duration.microseconds(100)
        var rounds = 0
        while !condition() {
            guard ContinuousClock.now < deadline else {
                throw CourierError(
                    .timeout, "ingest \(what) did not complete within \(timeout)", input: what, isRetryable: true)
            }
            rounds += 1
            if rounds % 8 == 0 { poke() }
            try? await Task.sleep(for: interval)
            interval = min(interval * 2, .milliseconds(5))
        }
    }

    // MARK: Resharding

    /// Adds `count` shards. Placement changes for many subjects, so the bus first drains every
    /// ring (producers wait meanwhile): no event overtakes an earlier one of its subject.
    ///
    /// - Throws: ``CourierError/Code/invalidConfiguration`` beyond ``Configuration/maxShards``,
    ///   ``CourierError/Code/timeout`` if the rings do not drain within `timeout` (the layout is
    ///   then left unchanged), ``CourierError/Code/shutdown`` after shutdown.
    public func addShards(_ count: Int, timeout: Duration = .seconds(30)) async throws {
        guard count >= 1 else { throw CourierError(.invalidConfiguration, "add at least one shard", input: "count") }
        try await reshard(by: count, timeout: timeout)
    }

    /// Removes the `count` highest-numbered shards after draining them; nothing is lost and
    /// per-subject order is kept.
    ///
    /// - Throws: as ``addShards(_:timeout:)``; at least one shard must remain.
    public func removeShards(_ count: Int, timeout: Duration = .seconds(30)) async throws {
        guard count >= 1 else { throw CourierError(.invalidConfiguration, "remove at least one shard", input: "count") }
        try await reshard(by: -count, timeout: timeout)
    }

    private func reshard(by delta: Int, timeout: Duration) async throws {
        try await withTaskExecutorPreference(controlExecutor) {
            try await reshardOnControlThread(by: delta, timeout: timeout)
        }
    }

    private func reshardOnControlThread(by delta: Int, timeout: Duration) async throws {
        try await control.run {
            let word = layout.load(ordering: .acquiring)
            guard word & Self.shutdownFlag == 0 else { throw CourierError(.shutdown, "the ingest bus is shut down") }
            let current = Int(word & 0xFFFF)
            let target = current + delta
            guard target >= 1, target <= configuration.maxShards else {
                throw CourierError(
                    .invalidConfiguration,
                    "cannot go from \(current) to \(target) shards (1…\(configuration.maxShards))",
                    input: "shards"
                )
            }
            let epoch = (word >> 16) & 0xFFFF
            let nextEpoch = (epoch + 1) & 0xFFFF
            layout.store(word | Self.reshardingFlag, ordering: .releasing)
            for shard in 0..<current { rings[shard].close() }
            do {
                try await waitUntil(timeout: timeout, what: "reshard") {
                    (0..<current).allSatisfy { self.rings[$0].unaccounted == 0 }
                } poke: {
                    for shard in 0..<current { self.rings[shard].wake() }
                }
            } catch {
                for shard in 0..<current { rings[shard].reopen(epoch: epoch) }
                layout.store(word, ordering: .releasing)
                throw error
            }
            if target > current {
                let ready = table.initialized.load(ordering: .acquiring)
                for shard in ready..<max(ready, target) {
                    (rings + shard).initialize(to: IngestRing(capacity: configuration.ringCapacity, epoch: nextEpoch))
                }
                if target > ready { table.initialized.store(target, ordering: .releasing) }
                for shard in current..<target {
                    rings[shard].reopen(epoch: nextEpoch)
                    startWorker(shard)
                }
            } else {
                let removed = workers.withLock { workers in (target..<current).compactMap { workers[$0] } }
                for worker in removed { worker.requestStop(abandon: false) }
                for worker in removed { await worker.finish() }
            }
            for shard in 0..<min(current, target) { rings[shard].reopen(epoch: nextEpoch) }
            layout.store(UInt64(target) | nextEpoch << 16, ordering: .releasing)
            configuration.logger.info("ingest resharded", metadata: ["from": "\(current)", "to": "\(target)"])
        }
    }

    // MARK: Scaling advice

    /// What ``suggestScaling()`` advises.
    public struct ScalingSuggestion: Sendable, Hashable, CustomStringConvertible {
        /// The suggested shard count (equal to the current one to hold).
        public var shards: Int
        /// The current shard count.
        public var current: Int
        /// Why.
        public var reason: String

        public var description: String { "\(current) → \(shards) shards: \(reason)" }
    }

    /// Advice from ring fill levels and the last dispatch latencies: more shards when rings run
    /// more than ¾ full or dispatches take longer than four batch delays, fewer when every ring
    /// is nearly empty and dispatches are quick.
    public func suggestScaling() -> ScalingSuggestion {
        let current = shardCount
        var fullest = 0.0
        var total = 0.0
        var slowest: Duration = .zero
        for shard in 0..<current {
            let ring = rings[shard]
            let fill = Double(ring.pending) / Double(ring.capacity)
            fullest = max(fullest, fill)
            total += fill
            slowest = max(slowest, .nanoseconds(Int64(truncatingIfNeeded: ring.load(.lastDispatchNanos))))
        }
        let average = total / Double(max(1, current))
        let slow = configuration.batch.maxDelay * 4
        if fullest > 0.75 || slowest > max(slow, .milliseconds(10)) {
            let target = min(configuration.maxShards, max(current + 1, current * 2))
            return ScalingSuggestion(
                shards: target,
                current: current,
                reason: "fullest ring \(Int(fullest * 100))% full, slowest dispatch \(slowest)"
            )
        }
        if current > 1, fullest < 0.05, average < 0.02, slowest < configuration.batch.maxDelay {
            return ScalingSuggestion(
                shards: max(1, current / 2),
                current: current,
                reason: "rings nearly empty (fullest \(Int(fullest * 100))%), dispatches take \(slowest)"
            )
        }
        return ScalingSuggestion(
            shards: current, current: current, reason: "fill \(Int(average * 100))% on average, dispatch \(slowest)")
    }
}

/// The counters of an ``IngestBus``.
public struct IngestStats: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Events the bus took responsibility for: enqueued, or dropped on entry by the backpressure
    /// mode. Refused events are not included.
    public var eventsIngested: UInt64 = 0
    /// Events dropped: by the backpressure mode, in batches the adapter never took, or at a
    /// shutdown deadline.
    public var eventsDropped: UInt64 = 0
    /// Events refused to their producer (who still holds them).
    public var eventsRejected: UInt64 = 0
    /// Batches the adapter took.
    public var batchesDispatched: UInt64 = 0
    /// Events in those batches the adapter stored.
    public var eventsDispatched: UInt64 = 0
    /// Events the adapter rejected one by one (a bad subject, an oversized payload), which the
    /// bus dead-letters (``IngestBus/deadLetters``). After shutdown,
    /// `eventsDispatched + eventsDeadLettered + eventsDropped == eventsIngested`.
    public var eventsDeadLettered: UInt64 = 0
    /// Batch retries after retryable adapter errors.
    public var batchRetries: UInt64 = 0
    /// Events waiting in the rings.
    public var pending: UInt64 = 0
    /// Current shard count.
    public var shards: Int = 0
    /// Whether a shutdown deadline forced events to be dropped.
    public var shutdownWasLossy = false

    /// Creates zeroed stats.
    public init() {}

    public var description: String {
        "ingested \(eventsIngested), dispatched \(eventsDispatched) in \(batchesDispatched) batches, "
            + "dead-lettered \(eventsDeadLettered), dropped \(eventsDropped), "
            + "rejected \(eventsRejected), pending \(pending), shards \(shards)\(shutdownWasLossy ? ", lossy shutdown" : "")"
    }
}

/// Serialises async control operations (reshard, shutdown) in arrival order.
final class AsyncLock: Sendable {
    private let state = Mutex<(locked: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func run<T>(_ body: () async throws -> T) async rethrows -> T {
        await acquire()
        defer { release() }
        return try await body()
    }

    private func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let granted = state.withLock { state -> Bool in
                if !state.locked {
                    state.locked = true
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if granted { continuation.resume() }
        }
    }

    private func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.locked = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}
