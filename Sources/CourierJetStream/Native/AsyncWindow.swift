#if NATS
import DequeModule
import Synchronization

/// A counting semaphore for async code: bounds how many publishes are in flight, so a
/// publisher waits (suspended, not blocking a cooperative thread) for room.
///
/// Once the window is full, a waiting publisher is resumed only after a quarter of the window
/// (at most 256 slots) is free again, so a full window costs one task switch per batch of
/// acknowledgements rather than one per message.
final class AsyncWindow: Sendable {
    private struct State {
        var available: Int
        var waiters: Deque<CheckedContinuation<Void, Never>> = []
    }

    private let state: Mutex<State>
    /// The window size.
    let size: Int

    /// Free slots needed before a waiter is resumed.
    private let resumeAt: Int

    init(size: Int) {
        self.size = size
        self.resumeAt = max(1, min(size / 4, 256))
        self.state = Mutex(State(available: size))
    }

    /// Takes a slot, waiting for one when the window is full.
    func acquire() async {
        let granted = state.withLock { state -> Bool in
            guard state.available > 0 else { return false }
            state.available -= 1
            return true
        }
        if granted { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let grantedNow = state.withLock { state -> Bool in
                if state.available > 0 {
                    state.available -= 1
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if grantedNow { continuation.resume() }
        }
    }

    /// Returns a slot, handing it straight to the longest waiter if there is one.
    func release() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.available += 1
            guard state.available >= resumeAt, let waiter = state.waiters.popFirst() else { return nil }
            state.available -= 1  // handed to the waiter
            return waiter
        }
        waiter?.resume()
    }

    /// Slots currently taken.
    var inFlight: Int { state.withLock { size - $0.available } }
}
#endif
