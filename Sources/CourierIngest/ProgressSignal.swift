import Synchronization

/// Wakes the tasks waiting for the ingest core to make progress — a flush, a shutdown or a
/// reshard waiting for rings to drain — whenever a shard worker accounts for events, so they are
/// signalled rather than polling with sleeps.
final class ProgressSignal: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var nextID: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    }

    private let state = Mutex(State())

    /// Something changed: every waiter looks again. Called by shard workers, on their threads.
    func notify() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.generation &+= 1
            guard !state.waiters.isEmpty else { return [] }
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Waits until `condition` holds (checked at once and after each notification) or
    /// `deadline` passes; returns whether it holds. `poke` runs before each wait (to wake
    /// workers that are parked).
    func wait(until deadline: ContinuousClock.Instant, poke: () -> Void, _ condition: () -> Bool) async -> Bool {
        while true {
            let generation = state.withLock { $0.generation }
            if condition() { return true }
            guard ContinuousClock.now < deadline else { return false }
            poke()
            await next(after: generation, until: deadline)
        }
    }

    /// Returns after the first notification past `generation`, or at `deadline`.
    private func next(after generation: UInt64, until deadline: ContinuousClock.Instant) async {
        let id = state.withLock { state -> UInt64 in
            state.nextID &+= 1
            return state.nextID
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let changed = state.withLock { state -> Bool in
                guard state.generation == generation else { return true }
                state.waiters[id] = continuation
                return false
            }
            if changed {
                continuation.resume()
                return
            }
            Task {
                try? await Task.sleep(until: deadline, clock: .continuous)
                let waiter = self.state.withLock { $0.waiters.removeValue(forKey: id) }
                waiter?.resume()
            }
        }
    }
}
