#if NATS
import CourierCore
import Synchronization

/// One call's messages in flight: their results, the messages held back after a retryable
/// failure (kept for an ordered resend), and how many are on the wire.
///
/// Per-batch order is the invariant: once one message failed retryably the batch stops
/// sending (``isHalted``), waits until nothing of it is in flight, and resends what failed, in
/// index order, the first one alone. A message is never resent on a timer of its own, so a
/// later message cannot overtake an earlier one that failed.
final class OrderedBatch: Sendable {
    private struct State {
        var results: [Result<PublishAck, CourierError>?]
        var remaining: Int
        /// Messages that failed retryably, by index, with the failure.
        var held: [Int: (msg: UInt, error: CourierError)] = [:]
        var settledWaiter: CheckedContinuation<Void, Never>?
    }

    /// The batch's messages on the wire. Raised without the lock by the one sending task, which
    /// is also the only one to wait for it to reach zero (``settled()``); lowered under the lock,
    /// where the waiter is checked, so the last one out always finds a waiter that registered.
    private let inFlight = Atomic<Int>(0)

    /// Lowers ``inFlight`` (under the lock) and returns the waiter to resume if it reached zero.
    private func leaveFlight(_ state: inout State) -> CheckedContinuation<Void, Never>? {
        guard inFlight.subtract(1, ordering: .acquiringAndReleasing).newValue == 0,
            let waiter = state.settledWaiter
        else { return nil }
        state.settledWaiter = nil
        return waiter
    }

    private let state: Mutex<State>
    /// Whether the batch is halted: read without the lock (the sending loop checks it twice per
    /// message, and the reply thread takes the lock for every acknowledgement), written only
    /// under it, together with `held`.
    private let haltedFlag = Atomic<Bool>(false)
    /// Whether the batch ever halted: set with the halt, never cleared. A later batch of the same
    /// ``PublishLane`` stops sending once it is set.
    private let troubledFlag = Atomic<Bool>(false)
    /// Opens once every message was sent at least once (or the call ended).
    private let allSent = Gate()
    /// Opens when the call ended, its results known.
    private let finished = Gate()
    /// Whether the call ended with a message failed retryably: the caller fails the whole batch.
    private let failedFlag = Atomic<Bool>(false)
    let deadline: ContinuousClock.Instant

    init(count: Int, deadline: ContinuousClock.Instant) {
        state = Mutex(State(results: Array(repeating: nil, count: count), remaining: count))
        self.deadline = deadline
    }

    /// Whether a message failed retryably and the batch must stop sending new ones.
    var isHalted: Bool { haltedFlag.load(ordering: .acquiring) }

    func sent() { inFlight.add(1, ordering: .acquiringAndReleasing) }

    /// Whether a message of the batch ever failed retryably or the connection dropped under it.
    var isTroubled: Bool { troubledFlag.load(ordering: .acquiring) }

    /// Stops sending new messages until what is in flight settled (the connection was lost).
    func halt() {
        state.withLock { _ in
            troubledFlag.store(true, ordering: .releasing)
            haltedFlag.store(true, ordering: .releasing)
        }
    }

    /// Every message was sent once: a later batch of the lane may start sending.
    func markAllSent() { allSent.open() }

    /// Waits until every message was sent once, or the call ended.
    func waitAllSent() async { await allSent.wait() }

    /// The call ended: records whether a message is left failed retryably (or without a result),
    /// which fails the batch, and wakes a later batch of the lane waiting for it.
    func finish() {
        let failed = state.withLock { state in
            state.results.contains { result in result.map(Self.failsBatch) ?? true }
        }
        finish(failed: failed)
    }

    /// Whether `result` fails the whole batch: a failure the caller retries (retryable, or the
    /// connection closing), as opposed to a message refused for good.
    static func failsBatch(_ result: Result<PublishAck, CourierError>) -> Bool {
        guard case .failure(let error) = result else { return false }
        return error.isRetryable || error.code == .shutdown || error.code == .closed
    }

    /// The call ended, failed or not (a lane's atomic call, whose results are not kept here).
    func finish(failed: Bool) {
        if !finished.isOpen { failedFlag.store(failed, ordering: .releasing) }
        allSent.open()
        finished.open()
    }

    /// Waits until the call ended; returns whether it failed (see ``finish()``).
    func waitFinished() async -> Bool {
        await finished.wait()
        return failedFlag.load(ordering: .acquiring)
    }

    /// Whether the call ended, and failed.
    var isFinished: Bool { finished.isOpen }
    var hasFailed: Bool { finished.isOpen && failedFlag.load(ordering: .acquiring) }

    /// A message's final result.
    func resolve(_ index: Int, _ result: Result<PublishAck, CourierError>, wasInFlight: Bool = true) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.results[index] == nil {
                state.results[index] = result
                state.remaining -= 1
            }
            return wasInFlight ? leaveFlight(&state) : nil
        }
        waiter?.resume()
    }

    /// A message that failed retryably: kept for an ordered resend; the batch halts.
    func hold(_ index: Int, msg: OpaquePointer, error: CourierError) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.held[index] = (UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(msg))), error)
            troubledFlag.store(true, ordering: .releasing)
            haltedFlag.store(true, ordering: .releasing)
            return leaveFlight(&state)
        }
        waiter?.resume()
    }

    /// Waits until none of the batch's messages is in flight.
    func settled() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if inFlight.load(ordering: .acquiring) == 0 { return true }
                state.settledWaiter = continuation
                return false
            }
            if now { continuation.resume() }
        }
    }

    /// The held messages, oldest index first, with the last failure; the batch may send again.
    func takeHeld() -> (messages: [(index: Int, msg: OpaquePointer)], lastError: CourierError?) {
        state.withLock { state in
            let held = state.held.sorted { $0.key < $1.key }
            state.held.removeAll()
            haltedFlag.store(false, ordering: .releasing)
            return (
                held.map { ($0.key, OpaquePointer(bitPattern: $0.value.msg)!) },
                held.last?.value.error
            )
        }
    }

    /// Every result, once all are in.
    var results: [Result<PublishAck, CourierError>] { state.withLock { $0.results.map { $0! } } }

    var isComplete: Bool { state.withLock { $0.remaining == 0 } }
}

/// The consecutive publish calls of one ordered sequence of batches (an ingest shard's), which
/// may overlap: a call starts sending once the call before it sent everything, so the server
/// stores one batch while the next is on its way. Order holds across calls as within one: once
/// the earlier call halts, the later one stops sending; it resends nothing until the earlier
/// one ended, and fails without sending more if that one failed (its caller retries the earlier
/// batch first, then this one).
final class PublishLane: Sendable {
    /// The latest call of the batch with the highest sequence so far: the one a new batch
    /// follows.
    private struct Head {
        var sequence: UInt64
        var call: OrderedBatch
    }

    private let head: Mutex<Head?>

    init() { head = Mutex(nil) }

    /// Enters `call`, for the batch starting at `sequence`, and returns the call it must follow:
    /// for a new batch, the latest call of the one before it. A retry follows nothing: its
    /// caller makes it only once the later calls ended. A retry of the newest batch becomes
    /// the one the next batch follows.
    func enter(_ call: OrderedBatch, sequence: UInt64) -> OrderedBatch? {
        head.withLock { head in
            guard let current = head else {
                head = Head(sequence: sequence, call: call)
                return nil
            }
            if sequence >= current.sequence { head = Head(sequence: sequence, call: call) }
            return sequence > current.sequence ? current.call : nil
        }
    }
}

/// The lanes of every producer's shards, made on first use.
final class PublishLanes: Sendable {
    private struct Key: Hashable {
        let producer: UInt64
        let shard: Int
    }

    private let lanes: Mutex<[Key: PublishLane]>

    init() { lanes = Mutex([:]) }

    /// The lane of `shard` of the producer `producer`.
    func lane(producer: UInt64, shard: Int) -> PublishLane {
        lanes.withLock { lanes in
            let key = Key(producer: producer, shard: shard)
            if let lane = lanes[key] { return lane }
            let lane = PublishLane()
            lanes[key] = lane
            return lane
        }
    }
}

#endif
