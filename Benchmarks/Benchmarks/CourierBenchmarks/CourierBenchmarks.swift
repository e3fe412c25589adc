import Benchmark
import Courier

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, eventsPerSecond],
        timeUnits: .milliseconds,
        warmupIterations: 1,
        maxDuration: .seconds(5),
        maxIterations: 10
    )
    memoryBenchmarks()
    ingestBenchmarks()
    jetStreamBenchmarks()
}
