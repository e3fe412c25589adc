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
    let deadline: ContinuousClock.Instant

    init(count: Int, deadline: ContinuousClock.Instant) {
        state = Mutex(State(results: Array(repeating: nil, count: count), remaining: count))
        self.deadline = deadline
    }

    /// Whether a message failed retryably and the batch must stop sending new ones.
    var isHalted: Bool { haltedFlag.load(ordering: .acquiring) }

    func sent() { inFlight.add(1, ordering: .acquiringAndReleasing) }

    /// Stops sending new messages until what is in flight settled (the connection was lost).
    func halt() {
        state.withLock { _ in haltedFlag.store(true, ordering: .releasing) }
    }

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
#endif
