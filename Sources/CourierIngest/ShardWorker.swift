import CourierCore
import Logging
import Synchronization

/// The memory of every ring of a bus, freed when the bus and its last worker are gone.
///
/// `@unchecked Sendable`: the pointer is set in `init`; a slot is initialised before
/// `initialized` is stored with release ordering, and readers acquire it before touching the
/// slot; the memory is freed in `deinit`, when neither the bus nor a worker refers to it.
final class RingTable: @unchecked Sendable {
    let rings: UnsafeMutablePointer<IngestRing>
    let capacity: Int
    let initialized = Atomic<Int>(0)

    init(capacity: Int) {
        self.capacity = capacity
        rings = .allocate(capacity: capacity)
    }

    deinit {
        let count = initialized.load(ordering: .acquiring)
        for shard in 0..<count { rings[shard].deallocate() }
        rings.deinitialize(count: count)
        rings.deallocate()
    }
}

/// One shard's worker: a task pinned to its own thread that drains the ring into batches and
/// hands them to the adapter, retrying retryable failures within the budget.
///
/// `@unchecked Sendable`: `nextSequence` and `metrics` are touched only by the worker task (and
/// `nextSequence` read by the bus after that task ended, awaited through `finish()`); the other
/// mutable state is atomics and a mutex.
final class ShardWorker: @unchecked Sendable {
    let shard: Int
    private let ring: IngestRing
    private let table: RingTable
    private let configuration: IngestBus.Configuration
    private let nonce: UInt64
    private let deadLetters: any DlqHandler
    private let progress: ProgressSignal
    private let executor = BlockingExecutor(threads: 1)
    private let stopRequested = Atomic<Bool>(false)
    private let abandoned = Atomic<Bool>(false)
    private let detached = Atomic<Bool>(false)
    private let task = Mutex<Task<Void, Never>?>(nil)
    /// The next shard sequence number; touched only by the worker task (and read after it ended).
    private(set) var nextSequence: UInt64
    /// swift-metrics reporting; touched only by the worker task.
    private var metrics: IngestMetricsReporter

    init(
        shard: Int, table: RingTable, configuration: IngestBus.Configuration, nonce: UInt64, sequenceStart: UInt64,
        deadLetters: any DlqHandler, progress: ProgressSignal
    ) {
        self.shard = shard
        self.deadLetters = deadLetters
        self.progress = progress
        self.table = table
        self.ring = table.rings[shard]
        self.configuration = configuration
        self.nonce = nonce
        self.nextSequence = sequenceStart
        self.metrics = IngestMetricsReporter(bus: configuration.name, shard: shard)
    }

    func start() {
        let running = Task(executorPreference: executor) { await self.run() }
        task.withLock { $0 = running }
    }

    /// Asks the worker to exit once its ring is closed and empty; with `abandon`, to stop
    /// dispatching and count what is left as dropped.
    func requestStop(abandon: Bool) {
        if abandon { abandoned.store(true, ordering: .relaxed) }
        stopRequested.store(true, ordering: .releasing)
        ring.wake()
    }

    /// Waits for the worker to exit and stops its thread.
    func finish() async {
        let running = task.withLock { $0 }
        await running?.value
        executor.shutdown()
    }

    /// For a bus going away without a shutdown: the worker stops its own thread when it exits.
    func detach() {
        detached.store(true, ordering: .releasing)
        requestStop(abandon: true)
    }

    private func run() async {
        let maxEvents = configuration.batch.maxEvents
        let maxDelay = configuration.batch.maxDelay
        let idle = max(.milliseconds(1), min(maxDelay, .milliseconds(5)))
        let pipelined = configuration.adapter.pipelinesBatches
        var buffer: [RawEvent] = []
        buffer.reserveCapacity(maxEvents)
        // With a pipelining adapter: the batch handed over last, still in the adapter.
        var inAdapter: Attempt?
        while true {
            if abandoned.load(ordering: .relaxed) {
                await settle(&inAdapter)
                dropRemaining()
                break
            }
            if ring.dequeue(into: &buffer, limit: maxEvents) == 0 {
                if inAdapter != nil {
                    await settle(&inAdapter)
                    metrics.report(ring)
                    progress.notify()
                    continue
                }
                if stopRequested.load(ordering: .acquiring), ring.isClosed, ring.unaccounted == 0 { break }
                ring.park(timeout: idle)
                continue
            }
            if (buffer.count < maxEvents), (maxDelay > .zero), !stopRequested.load(ordering: .relaxed) {
                let deadline = ContinuousClock.now + maxDelay
                while buffer.count < maxEvents {
                    if ring.dequeue(into: &buffer, limit: maxEvents - buffer.count) > 0 { continue }
                    let now = ContinuousClock.now
                    if now >= deadline || ring.park(timeout: deadline - now, returnEarlyOnWake: true) { break }
                }
            }
            let full = buffer.count == maxEvents
            let batch = Batch(shardID: shard, events: buffer, sequenceStart: nextSequence, producerNonce: nonce)
            nextSequence += UInt64(buffer.count)
            buffer.removeAll(keepingCapacity: true)
            if pipelined, full {
                // A backlog: the new batch goes to the adapter before the previous one's outcome
                // is handled, so the store works on one while the next is on its way. (Without
                // a backlog there is nothing to gain, and a batch sent long after the previous
                // one could overtake it across a fault.)
                let attempt = start(batch)
                let previous = inAdapter
                inAdapter = attempt
                if let previous {
                    let settledBoth = await settle(previous, before: attempt)
                    if settledBoth { inAdapter = nil }  // the next batch starts on an empty pipeline
                }
            } else {
                await settle(&inAdapter)
                await dispatch(batch)
            }
            metrics.report(ring)
            progress.notify()
        }
        metrics.report(ring)
        progress.notify()
        if detached.load(ordering: .acquiring) { executor.shutdown() }
    }

    /// Counts everything still in the ring as dropped at shutdown, waiting out producers that
    /// claimed a slot but have not written it yet.
    private func dropRemaining() {
        var rounds = 0
        while ring.unaccounted > 0, rounds < 100_000 {
            var dropped: UInt64 = 0
            ring.drainRemaining { _ in dropped += 1 }
            if dropped > 0 { ring.add(.droppedAtShutdown, dropped) } else { rounds += 1 }
        }
    }

    /// A batch's first call into a pipelining adapter, running while the worker forms the next.
    private struct Attempt {
        let batch: Batch
        let started: ContinuousClock.Instant
        let outcome: Task<Result<BatchResult, CourierError>, Never>
    }

    /// Hands `batch` to the adapter in a task of its own, on the worker's thread like every
    /// adapter call: producers blocked by backpressure may hold the shared pool's threads. The
    /// worker only blocks that thread while it waits for events with no batch in the adapter,
    /// or for at most `maxDelay` while a batch fills.
    private func start(_ batch: Batch) -> Attempt {
        let started = ContinuousClock.now
        return Attempt(
            batch: batch, started: started,
            outcome: Task(executorPreference: executor) { await self.call(batch) })
    }

    /// Handles an attempt's outcome: records it, or retries the batch. A batch that failed is
    /// retried only once the `later` batch already in the adapter returned (failing, since this
    /// one did, unless it was stored first), so the retry is not overtaken by it; then the later
    /// one is settled too, before any new batch goes in. Returns whether it settled `later`.
    private func settle(_ attempt: Attempt, before later: Attempt?) async -> Bool {
        let outcome = await attempt.outcome.value
        guard case .failure = outcome, let later else {
            await dispatch(attempt.batch, started: attempt.started, first: outcome)
            return false
        }
        let laterOutcome = await later.outcome.value
        await dispatch(attempt.batch, started: attempt.started, first: outcome)
        await dispatch(later.batch, started: later.started, first: laterOutcome)
        return true
    }

    /// Settles the batch left in the adapter, if any, and clears `inAdapter`.
    private func settle(_ inAdapter: inout Attempt?) async {
        guard let attempt = inAdapter else { return }
        inAdapter = nil
        _ = await settle(attempt, before: nil)
    }

    /// One call of the adapter with `batch`, bounded by the adapter timeout when it asks for it.
    private func call(_ batch: Batch) async -> Result<BatchResult, CourierError> {
        let adapter = configuration.adapter
        do {
            return .success(
                adapter.needsTimeoutGuard
                    ? try await Self.guarded(configuration.adapterTimeout, adapter: adapter) {
                        try await adapter.onBatch(batch)
                    }
                    : try await adapter.onBatch(batch))
        } catch {
            return .failure(Self.normalise(error))
        }
    }

    /// Calls the adapter with `batch` (starting from the outcome of a `first` call already made)
    /// and retries retryable failures within the budget; records the batch stored or dropped.
    private func dispatch(
        _ batch: Batch, started: ContinuousClock.Instant = .now, first: Result<BatchResult, CourierError>? = nil
    ) async {
        let events = batch.events
        var attempt = 0
        var backoff = configuration.retryBackoff
        var pending = first
        while true {
            let outcome: Result<BatchResult, CourierError>
            if let known = pending {
                outcome = known
                pending = nil
            } else {
                outcome = await call(batch)
            }
            switch outcome {
            case .success(let result):
                let rejected = Set(result.rejected.map(\.index)).filter { events.indices.contains($0) }
                ring.add(.dispatched, UInt64(events.count - rejected.count))
                if !rejected.isEmpty {
                    await deadLetter(result.rejected.filter { rejected.contains($0.index) }, of: batch)
                }
                ring.add(.batches, 1)
                let elapsed = (ContinuousClock.now - started).components
                let nanoseconds =
                    UInt64(max(0, elapsed.seconds)) * 1_000_000_000
                    + UInt64(max(0, elapsed.attoseconds) / 1_000_000_000)
                ring.counter(.lastDispatchNanos).pointee.store(nanoseconds, ordering: .relaxed)
                metrics.recordBatch(nanoseconds: Int64(truncatingIfNeeded: nanoseconds))
                return
            case .failure(let failure):
                if failure.isRetryable, attempt < configuration.retryBudget, !abandoned.load(ordering: .relaxed) {
                    attempt += 1
                    ring.add(.retries, 1)
                    configuration.logger.warning(
                        "ingest batch failed; retrying",
                        metadata: [
                            "shard": "\(shard)", "sequenceStart": "\(batch.sequenceStart)", "events": "\(events.count)",
                            "attempt": "\(attempt)/\(configuration.retryBudget)", "error": "\(failure)",
                        ]
                    )
                    try? await Task.sleep(for: backoff)
                    backoff = min(backoff * 2, .seconds(1))
                    continue
                }
                ring.add(.droppedInBatches, UInt64(events.count))
                configuration.logger.error(
                    "ingest batch dropped",
                    metadata: [
                        "shard": "\(shard)", "sequenceStart": "\(batch.sequenceStart)", "events": "\(events.count)",
                        "attempts": "\(attempt + 1)", "error": "\(failure)",
                    ]
                )
                await configuration.onDroppedBatch?(batch, failure)
                return
            }
        }
    }

    /// Hands each event the adapter rejected to the dead-letter handler with its reason,
    /// retrying a failing hand-off a few times; one that never succeeds is counted as dropped and
    /// logged, never lost silently.
    private func deadLetter(_ rejected: [RejectedEvent], of batch: Batch) async {
        for rejection in rejected {
            let raw = batch.events[rejection.index]
            let reason = "rejected by adapter \(configuration.adapter.name): \(rejection.error.message)"
            let letter: DeadLetterEvent =
                if let event = try? raw.decoded() {
                    DeadLetterEvent(event: event, reason: reason, attempts: 1, consumer: "ingest:\(configuration.name)")
                } else {
                    DeadLetterEvent.undecodable(
                        subject: raw.subject, raw: raw.bytes, reason: reason, attempts: 1,
                        consumer: "ingest:\(configuration.name)", streamSequence: nil,
                        messageID: batch.dedupeID(at: rejection.index), prefix: "")
                }
            var delay = Duration.milliseconds(10)
            var handed = false
            for attempt in 1...5 {
                do {
                    try await deadLetters.handle(letter)
                    handed = true
                    break
                } catch {
                    configuration.logger.warning(
                        "dead-lettering a rejected ingest event failed",
                        metadata: ["shard": "\(shard)", "attempt": "\(attempt)/5", "error": "\(error)"])
                    try? await Task.sleep(for: delay)
                    delay *= 4
                }
            }
            if handed {
                ring.add(.deadLettered, 1)
                configuration.logger.warning(
                    "ingest event rejected by the adapter and dead-lettered",
                    metadata: [
                        "shard": "\(shard)", "subject": "\(CourierError.abbreviated(raw.subject))",
                        "error": "\(rejection.error)",
                    ])
            } else {
                ring.add(.droppedInBatches, 1)
                configuration.logger.error(
                    "ingest event rejected by the adapter and could not be dead-lettered: dropped",
                    metadata: ["shard": "\(shard)", "subject": "\(CourierError.abbreviated(raw.subject))"])
            }
        }
    }

    /// Runs `body` in a child task (which stays on the worker's thread) raced against a timer;
    /// the loser is cancelled. An adapter must honour cancellation for the timeout to end it.
    private static func guarded(
        _ limit: Duration, adapter: any Adapter, _ body: @escaping @Sendable () async throws -> BatchResult
    ) async throws -> BatchResult {
        try await withThrowingTaskGroup(of: BatchResult?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: limit)
                return nil
            }
            defer { group.cancelAll() }
            guard let finished = try await group.next(), let result = finished else {
                throw CourierError(
                    .transient, "adapter \(adapter.name) took longer than \(limit)", input: adapter.name,
                    isRetryable: true)
            }
            return result
        }
    }

    /// Adapter errors as `CourierError`s; anything else is fatal.
    static func normalise(_ error: any Error) -> CourierError {
        if let error = error as? CourierError { return error }
        if error is CancellationError { return CourierError(.shutdown, "cancelled") }
        return CourierError(.fatal, "\(error)")
    }
}
