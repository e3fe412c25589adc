import CoreMetrics
import CourierCore
import CourierIngest
import Logging
import MetricsTestKit
import ServiceLifecycle
import Synchronization
import Testing

@Suite("Ingest bus as a Service")
struct IngestServiceTests {
    @Test("Graceful shutdown of a ServiceGroup drains the bus: everything ingested reaches the adapter")
    func gracefulShutdownDrains() async throws {
        let adapter = RecordingAdapter()
        let bus = try IngestBus(
            configuration: .init(shards: 2, ringCapacity: 1024, adapter: adapter, logger: quietIngestLogger))
        let group = ServiceGroup(services: [bus], logger: quietIngestLogger)
        let running = Task { try await group.run() }
        let total = 20_000
        for index in 0..<total { _ = try bus.ingestRaw(loadEvent(producer: 0, index: index, subjects: 10)) }
        await group.triggerGracefulShutdown()
        try await running.value
        let stats = bus.stats
        #expect(stats.eventsIngested == UInt64(total))
        #expect(stats.eventsDispatched == UInt64(total) && stats.eventsDropped == 0 && !stats.shutdownWasLossy)
        #expect(adapter.events.count == total)
        #expect(throws: CourierError.self) { try bus.ingestRaw(loadEvent(producer: 0, index: total, subjects: 10)) }
    }

    /// One recording metrics backend for this test process (bootstrapping is once per process).
    static let metrics: TestMetrics = {
        let metrics = TestMetrics()
        MetricsSystem.bootstrap(metrics)
        return metrics
    }()

    @Test("Shard workers report dispatched, dropped and rejected events through swift-metrics")
    func swiftMetrics() async throws {
        let metrics = Self.metrics
        let name = "metrics-\(UInt32.random(in: 0...UInt32.max))"
        var configuration = IngestBus.Configuration(
            shards: 2, ringCapacity: 64, backpressure: .dropNewest, adapter: SlowAdapter(), logger: quietIngestLogger)
        configuration.name = name
        let bus = try IngestBus(configuration: configuration)
        for index in 0..<5_000 { _ = try? bus.ingestRaw(loadEvent(producer: 0, index: index, subjects: 10)) }
        let stats = await bus.shutdown()
        func total(_ label: String) throws -> Int64 {
            try (0..<2).reduce(Int64(0)) { sum, shard in
                sum + (try metrics.expectCounter(label, [("bus", name), ("shard", String(shard))]).totalValue)
            }
        }
        #expect(stats.eventsDropped > 0, "a 64-slot ring behind a slow adapter must overflow")
        #expect(try total("courier_ingest_events_dispatched_total") == Int64(stats.eventsDispatched))
        #expect(try total("courier_ingest_events_dropped_total") == Int64(stats.eventsDropped))
        #expect(try total("courier_ingest_batches_total") == Int64(stats.batchesDispatched))
    }
}

/// An adapter that takes 1 ms per batch, so producers outrun it.
final class SlowAdapter: Adapter {
    let name = "slow"
    func onBatch(_ batch: Batch) async throws -> BatchResult {
        try await Task.sleep(for: .milliseconds(1))
        return .stored
    }
    func pollShard(shard: Int, cursor: UInt64, limit: Int) async throws -> ShardPollResult {
        ShardPollResult(events: [], cursor: cursor, hasMore: false)
    }
    func flush() async throws {}
    func shutdown() async {}
}
