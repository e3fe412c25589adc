import Benchmark
import Courier
import Foundation

/// Heap allocations per published event on JetStream's publish paths, counted by
/// package-benchmark's malloc interposer (the whole process: Courier, cnats and Swift's runtime).
/// Runs only when `COURIER_BENCH_NATS_URL` names a nats-server with JetStream; the connections
/// close when the benchmark process exits.
func jetStreamBenchmarks() {
    guard let url = ProcessInfo.processInfo.environment["COURIER_BENCH_NATS_URL"] else { return }
    let count = 10_000
    let payload: JSONValue = ["data": .string(String(repeating: "x", count: 118))]
    let configuration = Benchmark.Configuration(
        metrics: [.mallocCountTotal, .wallClock, eventsPerSecond],
        timeUnits: .milliseconds,
        warmupIterations: 1,
        maxDuration: .seconds(10),
        maxIterations: 10
    )
    func connect(_ stream: String, _ prefix: String) async throws -> JetStreamProvider {
        var settings = JetStreamProvider.Configuration(url: url)
        settings.stream = stream
        settings.subjectPrefix = prefix
        settings.storage = .memory
        settings.maxEvents = 200_000
        return try await JetStreamProvider.connect(settings)
    }
    Benchmark("jetstream: publishBatch, 10 000 events (divide mallocs by 10 000)", configuration: configuration) {
        benchmark, provider in
        let events = (0..<count).map { _ in Event(subject: "allocpub.market.fx", category: "market", payload: payload) }
        try await benchmark.measure(count) {
            for result in await provider.publishBatch(events) { _ = try result.get() }
        }
    } setup: {
        try await connect("ALLOC_PUB", "allocpub")
    }
    Benchmark(
        "jetstream: JetStreamAdapter.onBatch, 10 × 1 000 events (divide mallocs by 10 000)",
        configuration: configuration
    ) { benchmark, adapter in
        let raw = (0..<1000).map { _ in
            RawEvent(Event(subject: "allocingest.market.fx", category: "market", payload: payload))
        }
        let nonce = UInt64.random(in: 0...UInt64.max)
        try await benchmark.measure(count) {
            for round in 0..<(count / 1000) {
                let batch = Batch(shardID: 0, events: raw, sequenceStart: UInt64(round * 1000), producerNonce: nonce)
                _ = try await adapter.onBatch(batch)
            }
        }
    } setup: {
        JetStreamAdapter(provider: try await connect("ALLOC_INGEST", "allocingest"))
    }
}
