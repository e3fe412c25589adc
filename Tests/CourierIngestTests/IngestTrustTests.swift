import CourierCore
import CourierIngest
import CourierTesting
import Logging
import Synchronization
import Testing

/// Ingest defects that stalled shards, dropped whole batches or misreported drops (issue
/// "Trust under faults"). Each test failed before its fix.
@Suite("Trust under faults: ingest core")
struct IngestTrustTests {
    // MARK: Item 12: backpressure outcomes

    @Test(".sample tells the producer when its own event was dropped")
    func sampleReportsDrops() async throws {
        let adapter = GateAdapter()
        let bus = try IngestBus(
            configuration: .init(
                shards: 1, ringCapacity: 2, batch: .init(maxEvents: 1, maxDelay: .zero),
                backpressure: .sample(rate: 0.5), adapter: adapter, logger: Logger(label: "test")))
        // The worker takes the first event and blocks in the adapter; the ring then fills.
        try bus.ingestRaw(RawEvent(subject: "events.s.one", bytes: Array("0".utf8)))
        #expect(await eventually(within: .seconds(5)) { adapter.received.count == 1 })
        var accepted: [String] = ["0"]
        for i in 1..<40 {
            do {
                try bus.ingestRaw(RawEvent(subject: "events.s.one", bytes: Array("\(i)".utf8)))
                accepted.append("\(i)")
            } catch let error as CourierError where error.code == .backpressure {
                continue  // dropped, and the producer knows
            }
        }
        adapter.open()
        _ = await bus.shutdown(deadline: .seconds(10))
        let delivered = adapter.received
        // Sampling evicts the oldest waiting events to keep some new ones: what reaches the
        // adapter last are the newest events whose ingest reported success.
        #expect(delivered.suffix(2) == Array(accepted.suffix(2)), "delivered \(delivered), accepted \(accepted)")
    }

    // MARK: Item 6: bad ingest events

    @Test("ingestRaw refuses an invalid subject with a typed error")
    func ingestValidatesSubjects() async throws {
        let adapter = GateAdapter()
        adapter.open()
        let bus = try IngestBus(configuration: .init(shards: 1, adapter: adapter, logger: Logger(label: "test")))
        for bad in [
            "events.bad subject", "", "events..x", "events.*.x", "events." + String(repeating: "y", count: 5000),
        ] {
            let error = #expect(throws: CourierError.self) { try bus.ingestRaw(RawEvent(subject: bad, bytes: [])) }
            #expect(error?.code == .invalidSubject)
        }
        let stats = await bus.shutdown()
        #expect(stats.eventsIngested == 0 && stats.eventsRejected == 5, "\(stats)")
    }

    @Test("one oversized event is dead-lettered; the rest of its batch is stored and counted")
    func oversizedEventIsolated() async throws {
        var memory = MemoryProvider.Configuration()
        memory.maxPayloadBytes = 2000
        let provider = MemoryProvider(configuration: memory)
        let bus = try IngestBus(
            configuration: .init(
                shards: 1, batch: .init(maxEvents: 16, maxDelay: .milliseconds(200)),
                adapter: ProviderAdapter(provider: provider), logger: Logger(label: "test")))
        for i in 0..<10 {
            let size = i == 4 ? 5000 : 10
            try bus.ingestRaw(
                RawEvent(
                    Event(
                        subject: "events.ingest.s", category: "ingest",
                        payload: ["i": .int(Int64(i)), "pad": .string(String(repeating: "p", count: size))])))
        }
        let stats = await bus.shutdown()
        #expect(try await provider.info().messages == 9, "every other event of the batch is stored")
        #expect(stats.eventsDispatched == 9, "\(stats)")
        #expect(
            try await provider.history(filter: nil, limit: 20).compactMap { $0.payload["i"]?.intValue }
                == [0, 1, 2, 3, 5, 6, 7, 8, 9])
    }
}

/// An adapter that holds every batch until ``open()`` and records the payloads it took.
final class GateAdapter: Adapter {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>], received: [String])>(
        (false, [], []))

    var name: String { "gate" }

    func open() {
        let waiters = state.withLock { state in
            state.open = true
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    var received: [String] { state.withLock { $0.received } }

    func onBatch(_ batch: Batch) async throws -> BatchResult {
        state.withLock { $0.received += batch.events.map { String(decoding: $0.bytes, as: UTF8.self) } }
        await withCheckedContinuation { continuation in
            let go = state.withLock { state -> Bool in
                if state.open { return true }
                state.waiters.append(continuation)
                return false
            }
            if go { continuation.resume() }
        }
        return .stored
    }

    func pollShard(shard: Int, cursor: UInt64, limit: Int) async throws -> ShardPollResult {
        ShardPollResult(events: [], cursor: cursor, hasMore: false)
    }

    func flush() async throws {}
    func shutdown() async {}
    var needsTimeoutGuard: Bool { false }
}
