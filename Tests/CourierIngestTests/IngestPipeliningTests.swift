import CourierCore
import CourierIngest
import Synchronization
import Testing

/// A latch a test opens once (a ``Gate``), with a bounded wait.
final class Latch: Sendable {
    private let gate = Gate()
    private let expired = Atomic<Bool>(false)

    func open() { gate.open() }

    /// Waits until the latch opens, or `limit` passed (then it opens as expired); returns
    /// whether it was opened by ``open()``.
    func wait(atMost limit: Duration) async -> Bool {
        let timer = Task {
            try? await Task.sleep(for: limit)
            guard !Task.isCancelled, !gate.isOpen else { return }
            expired.store(true, ordering: .releasing)
            gate.open()
        }
        await gate.wait()
        timer.cancel()
        return !expired.load(ordering: .acquiring)
    }
}

/// An adapter that takes a shard's next batch while the previous one is in it, and keeps the
/// contract that asks of it the plain way: a call stores its batch only once the call before it
/// (by sequence) ended, and fails when that one failed. The first call waits for ``release``
/// (so the test can fill the ring meanwhile); the call of the batch starting at `probe` waits
/// for the next call to come in (so the test sees the overlap); the first attempt of the batch
/// starting at `failing` fails retryably once the batch behind it came in.
final class PipeliningAdapter: Adapter {
    private struct State {
        var entered: [UInt64] = []
        var stored: [UInt64] = []
        var failed: Set<Int> = []
        var inside = 0
        var most = 0
        var overlapSeen = false
        /// The latest call of the highest sequence so far, which a new batch follows.
        var head: (sequence: UInt64, call: Int)?
    }

    private let state = Mutex(State())
    private let probe: UInt64
    private let failing: UInt64
    private let entered = (0..<64).map { _ in Latch() }
    private let ended = (0..<64).map { _ in Latch() }
    /// Lets the first call end.
    let release = Latch()

    init(probe: UInt64, failing: UInt64) {
        self.probe = probe
        self.failing = failing
    }

    /// Waits until the first call came in.
    func firstCallEntered() async -> Bool { await entered[0].wait(atMost: .seconds(10)) }

    var name: String { "pipelining" }
    var pipelinesBatches: Bool { true }
    var needsTimeoutGuard: Bool { false }

    func onBatch(_ batch: Batch) async throws -> BatchResult {
        let sequence = batch.sequenceStart
        let (call, previous, firstAttempt) = state.withLock { state -> (Int, Int?, Bool) in
            let call = state.entered.count
            let first = !state.entered.contains(sequence)
            state.entered.append(sequence)
            state.inside += 1
            state.most = max(state.most, state.inside)
            var previous: Int?
            if let head = state.head {
                if sequence > head.sequence { previous = head.call }
                if sequence >= head.sequence { state.head = (sequence, call) }
            } else {
                state.head = (sequence, call)
            }
            return (call, previous, first)
        }
        precondition(call < entered.count, "more calls than the test expects")
        entered[call].open()
        func end(failing: Bool) {
            state.withLock { state in
                state.inside -= 1
                if failing { state.failed.insert(call) } else { state.stored.append(sequence) }
            }
            ended[call].open()
        }
        if call == 0 { _ = await release.wait(atMost: .seconds(10)) }
        if sequence == probe {
            let seen = await entered[call + 1].wait(atMost: .seconds(5))
            state.withLock { $0.overlapSeen = seen }
        }
        if sequence == failing, firstAttempt {
            _ = await entered[call + 1].wait(atMost: .seconds(5))
            end(failing: true)
            throw CourierError(.transient, "store briefly unavailable", isRetryable: true)
        }
        if let previous {
            _ = await ended[previous].wait(atMost: .seconds(30))
            if state.withLock({ $0.failed.contains(previous) }) {
                end(failing: true)
                throw CourierError(.transient, "the batch before this one failed", isRetryable: true)
            }
        }
        end(failing: false)
        return .stored
    }

    func pollShard(shard: Int, cursor: UInt64, limit: Int) async throws -> ShardPollResult {
        ShardPollResult(events: [], cursor: cursor, hasMore: false)
    }

    func flush() async throws {}
    func shutdown() async {}

    var enteredSequences: [UInt64] { state.withLock { $0.entered } }
    var storedSequences: [UInt64] { state.withLock { $0.stored } }
    var mostInside: Int { state.withLock { $0.most } }
    var overlapSeen: Bool { state.withLock { $0.overlapSeen } }
}

@Suite("Ingest core: pipelined batches")
struct IngestPipeliningTests {
    @Test(
        "a pipelining adapter gets a shard's next full batch while the previous one is in it; a failed batch is retried before the one behind it, and the shard's order holds",
        .timeLimit(.minutes(1)))
    func pipelinedBatchesKeepOrderAcrossAFailure() async throws {
        let adapter = PipeliningAdapter(probe: 100, failing: 300)
        let bus = try IngestBus(
            configuration: .init(
                shards: 1, ringCapacity: 2048, batch: .init(maxEvents: 100, maxDelay: .seconds(1)),
                backpressure: .block(timeout: .seconds(10)), adapter: adapter, logger: quietIngestLogger))
        // The first batch alone, then the rest while it is held in the adapter: every later
        // batch is full, so each goes in before the one ahead of it returned.
        for index in 0..<100 { try bus.ingestRaw(loadEvent(producer: 0, index: index, subjects: 1)) }
        #expect(await adapter.firstCallEntered())
        for index in 100..<1000 { try bus.ingestRaw(loadEvent(producer: 0, index: index, subjects: 1)) }
        adapter.release.open()
        let stats = await bus.shutdown(deadline: .seconds(30))
        #expect(stats.eventsDispatched == 1000 && stats.eventsDropped == 0, "\(stats)")
        #expect(stats.batchRetries == 2, "the failed batch and the one behind it, once each")
        #expect(adapter.overlapSeen, "the batch at 200 came in while the one at 100 was still in the adapter")
        #expect(adapter.mostInside == 2, "never more than two of a shard's batches in the adapter")
        #expect(
            adapter.enteredSequences == [0, 100, 200, 300, 400, 300, 400, 500, 600, 700, 800, 900],
            "the failed batch is retried before the one behind it, and nothing new goes in meanwhile")
        #expect(adapter.storedSequences == Array(stride(from: 0, to: 1000, by: 100)))
    }
}
