import CourierCore
import Logging
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
}
