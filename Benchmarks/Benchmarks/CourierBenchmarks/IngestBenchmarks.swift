import Benchmark
import Courier

/// `ingestRaw` into `NoopAdapter`: heap allocations on the hot path (the producer loop while the
/// shard workers drain it), counted by package-benchmark's malloc interposer.
func ingestBenchmarks() {
    let count = 1 << 20
    let events = (0..<1024).map { i in
        RawEvent(subject: "events.market.s\(i % 97)", bytes: Array(repeating: UInt8(ascii: "x"), count: 128))
    }
    Benchmark(
        "ingest: ingestRaw → NoopAdapter, 1 producer, 2^20 events",
        configuration: .init(
            metrics: [.mallocCountTotal, .wallClock, eventsPerSecond],
            timeUnits: .milliseconds,
            warmupIterations: 2,
            maxDuration: .seconds(10),
            maxIterations: 10
        )
    ) { benchmark, bus in
        benchmark.startMeasurement()
        let started = ContinuousClock.now
        for n in 0..<count { try bus.ingestRaw(events[n & 1023]) }
        let elapsed = (ContinuousClock.now - started).components
        benchmark.stopMeasurement()
        benchmark.measurement(
            eventsPerSecond, Int(Double(count) / (Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18)))
        try await bus.flush()
    } setup: {
        // Rings large enough that the producer never waits; workers drain concurrently.
        try IngestBus(
            configuration: .init(shards: 2, ringCapacity: 1 << 20, backpressure: .block(timeout: .seconds(10))))
    }
}
