import Benchmark

/// Events per second, measured by the benchmark itself around the work it times (one iteration
/// may process many events).
let eventsPerSecond = BenchmarkMetric.custom("events/s", polarity: .prefersLarger, useScalingFactor: false)

extension Benchmark {
    /// Times `body`, which processes `count` events, and records events per second.
    func measure(_ count: Int, _ body: () async throws -> Void) async rethrows {
        let started = ContinuousClock.now
        startMeasurement()
        try await body()
        stopMeasurement()
        let elapsed = (ContinuousClock.now - started).components
        measurement(
            eventsPerSecond, Int(Double(count) / (Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18)))
    }
}
