public import CourierCore

extension EventSubscription {
    /// Collects `count` deliveries, each within `timeout` of the previous one; fewer when they stop.
    /// With `acking`, each is acknowledged as it arrives, so none outlives its ack wait while
    /// the rest are awaited.
    public func collect(_ count: Int, within timeout: Duration, acking: Bool = false) async throws -> [PendingEvent] {
        var out: [PendingEvent] = []
        while out.count < count, let pending = try await next(timeout: timeout) {
            if acking { try await pending.ack() }
            out.append(pending)
        }
        return out
    }
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
public func eventually(
    within timeout: Duration,
    every interval: Duration = .milliseconds(20),
    _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try await condition() { return true }
        if ContinuousClock.now >= deadline { return false }
        try? await Task.sleep(for: interval)
    }
}

/// Runs `query` again while it fails retryably (a request timing out while a stream elects a
/// leader), pausing 100 ms between attempts, for at most `timeout`; then its last error.
public func settled<T: Sendable>(within timeout: Duration = .seconds(30), _ query: () async throws -> T)
    async throws -> T
{
    let deadline = ContinuousClock.now + timeout
    while true {
        do {
            return try await query()
        } catch let error as CourierError where error.isRetryable && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}
