public import CourierCore

extension EventSubscription {
    /// Collects `count` deliveries, each within `timeout` of the previous one; fewer when they stop.
    public func collect(_ count: Int, within timeout: Duration) async throws -> [PendingEvent] {
        var out: [PendingEvent] = []
        while out.count < count, let pending = try await next(timeout: timeout) { out.append(pending) }
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
