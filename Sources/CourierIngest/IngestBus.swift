public import CourierCore
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The high-throughput front door: producers call a non-blocking ``ingestRaw(_:)`` (or
/// ``ingestRaw(_:)``), events land in per-shard rings by the hash of their subject, and one worker
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
///
/// `@unchecked Sendable`: the bus's mutable state is atomics (`layout`, counters in the rings),
/// mutexes (`workers`) and the rings' own synchronisation; `rings` points at a table whose slot
/// `i` is written once, before `table.initialized` (released) passes `i`, and is only read by
/// threads that loaded the layout (acquired) that names it. `configuration` is immutable.
public final class IngestBus: @unchecked Sendable {
    /// The processors the scheduler lets this process use.
    public static var activeProcessorCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    // MARK: State

    /// Layout word: shard count (bits 0–15), epoch (16–31), resharding (32), shut down (33).
    let layout = Atomic<UInt64>(0)
    static let reshardingFlag: UInt64 = 1 << 32
    static let shutdownFlag: UInt64 = 1 << 33

    /// Rings by shard id; slot `i` is written once, before `table.initialized` passes `i`.
    let table: RingTable
    let rings: UnsafeMutablePointer<IngestRing>
    let workers = Mutex<[Int: ShardWorker]>([:])
    let rejectedAfterShutdown = Atomic<UInt64>(0)
    /// Events refused at entry for their subject.
    let rejectedSubjects = Atomic<UInt64>(0)
    /// `<prefix>.` as bytes when the adapter takes subjects under one prefix only.
    let acceptedPrefix: [UInt8]?
    let lossyShutdown = Atomic<Bool>(false)
    let sampleTick = Atomic<UInt64>(0)
    let control = AsyncLock()
    /// Control operations (flush, reshard, shutdown) wait on their own thread, so producers
    /// blocked on a full ring or a reshard cannot starve them of the cooperative pool.
    let controlExecutor = BlockingExecutor(threads: 1)
    /// Signalled by the shard workers whenever they account for events.
    let progress = ProgressSignal()

    /// The settings.
    public let configuration: Configuration
    /// Where events the adapter rejected one by one were dead-lettered, with their reasons.
    public let deadLetters: any DlqHandler
    /// The nonce stamped on this bus's batches.
    public let producerNonce: UInt64
    let sequenceBase: UInt64
    let wakeMask: Int
    let sampleEvery: UInt64
    let blockTimeout: Duration?

    /// Starts a bus with ``Configuration/shards`` workers.
    ///
    /// - Throws: `CourierError/Code/invalidConfiguration` naming the bad setting, or the
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

    /// Ingests a pre-serialised event and returns its shard at once (in `.block` mode, after at
    /// most the block timeout). A normal return means the bus took the event: it will be
    /// dispatched, dead-lettered or counted as dropped, never lost silently.
    ///
    /// - Throws: `CourierError/Code/invalidSubject` for a subject that cannot be published (or
    ///   lies outside the adapter's prefix), `CourierError/Code/backpressure` when the ring is
    ///   full and the mode refuses or drops this event (`isRetryable` says whether the producer
    ///   should try again), or `CourierError/Code/shutdown` after ``shutdown(deadline:)``.
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
    /// - Throws: `CourierError/Code/shutdown` when the bus is shut down before the first event.
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

    func startWorker(_ shard: Int) {
        let worker = ShardWorker(
            shard: shard,
            table: table,
            configuration: configuration,
            nonce: producerNonce,
            sequenceStart: workers.withLock { $0[shard]?.nextSequence } ?? sequenceBase,
            deadLetters: deadLetters,
            progress: progress
        )
        workers.withLock { $0[shard] = worker }
        worker.start()
    }

}
