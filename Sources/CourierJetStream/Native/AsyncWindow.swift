#if NATS
import DequeModule
import Synchronization

/// A counting semaphore for async code: bounds how many publishes are in flight, so a
/// publisher waits (suspended, not blocking a cooperative thread) for room.
///
/// Taking and returning a slot is one atomic operation while nobody waits: the publishing task
/// and the thread that handles acknowledgements share no lock per message. Only a publisher
/// that finds the window full takes the lock, to queue itself.
///
/// Once the window is full, a waiting publisher is resumed only after a quarter of the window
/// (at most 256 slots) is free again, so a full window costs one task switch per batch of
/// acknowledgements rather than one per message.
///
/// No wakeup is lost: a waiter counts itself in `waiting` and then tries for a slot once more,
/// under the lock; `release()` frees its slot and then reads `waiting` (all sequentially
/// consistent). Either the waiter's last try sees the freed slot, or the release sees the
/// waiter and resumes it under the same lock.
final class AsyncWindow: Sendable {
    private let available: Atomic<Int>
    /// Publishers queued in `waiters`, or about to be.
    private let waiting = Atomic<Int>(0)
    private let waiters = Mutex<Deque<CheckedContinuation<Void, Never>>>([])
    /// The window size.
    let size: Int

    /// Free slots needed before a waiter is resumed.
    private let resumeAt: Int

    init(size: Int) {
        self.size = size
        self.resumeAt = max(1, min(size / 4, 256))
        self.available = Atomic(size)
    }

    /// Takes a slot, waiting for one when the window is full.
    func acquire() async {
        if take() { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let grantedNow = waiters.withLock { queue -> Bool in
                waiting.add(1, ordering: .sequentiallyConsistent)
                if take() {
                    waiting.subtract(1, ordering: .sequentiallyConsistent)
                    return true
                }
                queue.append(continuation)
                return false
            }
            if grantedNow { continuation.resume() }
        }
    }

    /// Returns a slot, resuming the longest waiter (with a slot taken for it) once enough are free.
    func release() {
        let free = available.add(1, ordering: .sequentiallyConsistent).newValue
        guard free >= resumeAt, waiting.load(ordering: .sequentiallyConsistent) > 0 else { return }
        let waiter = waiters.withLock { queue -> CheckedContinuation<Void, Never>? in
            guard !queue.isEmpty, available.load(ordering: .sequentiallyConsistent) >= resumeAt, take() else {
                return nil
            }
            waiting.subtract(1, ordering: .sequentiallyConsistent)
            return queue.removeFirst()
        }
        waiter?.resume()
    }

    /// Slots currently taken.
    var inFlight: Int { size - available.load(ordering: .relaxed) }

    /// Takes a free slot if there is one.
    private func take() -> Bool {
        var free = available.load(ordering: .sequentiallyConsistent)
        while free > 0 {
            let (taken, seen) = available.compareExchange(
                expected: free, desired: free - 1, ordering: .sequentiallyConsistent)
            if taken { return true }
            free = seen
        }
        return false
    }
}
#endif
