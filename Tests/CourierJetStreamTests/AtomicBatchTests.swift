#if NATS
import CourierCore
import CourierIngest
import CourierJetStream
import CourierTesting
import Testing

/// Atomic batch publishing (nats-server 2.12+) of the ingest adapter's batches: stored whole
/// with one acknowledgement, stored once when sent again, per message on older servers and on
/// streams Courier did not create.
@Suite("JetStream atomic batch publishing")
struct AtomicBatchTests {
    static var serverHasBatches: Bool { NATSServerHarness.binaryIsAtLeast(2, 12) }

    static func connect(_ url: String, stream: String, atomic: Bool = true) async throws -> JetStreamProvider {
        var configuration = JetStreamIntegrationTests.configuration(url, stream: stream)
        configuration.requestTimeout = .seconds(5)
        configuration.atomicBatchPublish = atomic
        return try await JetStreamProvider.connect(configuration)
    }

    static func batch(_ count: Int, sequenceStart: UInt64 = 0) -> Batch {
        let events = (0..<count).map { i in
            RawEvent(JetStreamIntegrationTests.event(Int(sequenceStart) + i, topic: "t\(i % 7)"))
        }
        return Batch(shardID: 0, events: events, sequenceStart: sequenceStart, producerNonce: 0xC0FFEE)
    }

    /// The dedupe ids stored in the stream, in stream order.
    static func storedIDs(_ provider: JetStreamProvider, count: Int) async throws -> [String?] {
        try await provider.readStored(from: 1, limit: count + 10).map(\.messageID)
    }

    @Test("an adapter batch of 2 500 events is stored in order as three atomic batches on 2.12+, per message before")
    func adapterBatchesInOrder() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await Self.connect(server.url, stream: "ATOMIC")
        defer { Task { await provider.shutdown() } }
        let adapter = JetStreamAdapter(provider: provider)
        let batch = Self.batch(2500)
        let result = try await adapter.onBatch(batch)
        #expect(result.rejected.isEmpty)
        let ids = try await Self.storedIDs(provider, count: 2500)
        #expect(ids == (0..<2500).map { batch.dedupeID(at: $0) }, "every event stored once, in batch order")
        let info = try await provider.info()
        #expect(info.details["server"] == (try NATSServerHarness.binaryVersion()), "the harness reads its version")
        #expect(info.details["atomicBatches"] == (Self.serverHasBatches ? "on" : "off"))
        #expect(info.details["atomicBatchCommits"] == (Self.serverHasBatches ? "3" : "0"))
        #expect(info.details["atomicBatchFallbacks"] == "0")
    }

    @Test("a batch sent again is refused whole by the server and stored once; the next batch follows it")
    func retriedBatchStoredOnce() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await Self.connect(server.url, stream: "RETRIED")
        defer { Task { await provider.shutdown() } }
        let adapter = JetStreamAdapter(provider: provider)
        let first = Self.batch(800)
        _ = try await adapter.onBatch(first)
        // The bus retries a batch whose outcome it did not learn: the same dedupe ids again.
        let again = try await adapter.onBatch(first)
        #expect(again.rejected.isEmpty, "duplicates are not failures")
        let next = Self.batch(300, sequenceStart: 800)
        _ = try await adapter.onBatch(next)
        let ids = try await Self.storedIDs(provider, count: 1100)
        #expect(
            ids == (0..<800).map { first.dedupeID(at: $0) } + (0..<300).map { next.dedupeID(at: $0) },
            "nothing stored twice, in order")
        let info = try await provider.info()
        if Self.serverHasBatches {
            #expect(info.details["atomicBatchCommits"] == "2")
            #expect(info.details["atomicBatchFallbacks"] == "1", "the refused batch went per message")
        }
    }

    @Test(
        "the adapter rejects an event outside the stream and an oversized one by index, and stores the rest in order",
        arguments: [false, true])
    func adapterRejectsByIndex(atomic: Bool) async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await Self.connect(server.url, stream: "REJECTS", atomic: atomic)
        defer { Task { await provider.shutdown() } }
        var events = Self.batch(10).events
        events[3] = RawEvent(Event(subject: "elsewhere.orders.t3", category: "orders"))
        let huge = Event(
            subject: "events.orders.huge", category: "orders",
            payload: ["blob": .string(String(repeating: "x", count: 2 << 20))])
        events[7] = RawEvent(huge)
        let batch = Batch(shardID: 0, events: events, sequenceStart: 0, producerNonce: 0xC0FFEE)
        let result = try await JetStreamAdapter(provider: provider).onBatch(batch)
        #expect(result.rejected.map(\.index) == [3, 7])
        #expect(result.rejected.first?.error.code == .invalidSubject)
        #expect(result.rejected.first?.error.input == "elsewhere.orders.t3")
        #expect(result.rejected.last?.error.code == .payloadTooLarge)
        let kept = [0, 1, 2, 4, 5, 6, 8, 9]
        #expect(try await Self.storedIDs(provider, count: 10) == kept.map { batch.dedupeID(at: $0) })
    }

    @Test("an existing stream without allow_atomic is used as it is, per message")
    func existingStreamUnchanged() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let creator = try await Self.connect(server.url, stream: "OPERATOR", atomic: false)
        #expect(try await creator.info().details["atomicBatches"] == "off")
        await creator.shutdown()

        let provider = try await Self.connect(server.url, stream: "OPERATOR")
        defer { Task { await provider.shutdown() } }
        let batch = Self.batch(1500)
        _ = try await JetStreamAdapter(provider: provider).onBatch(batch)
        #expect(try await Self.storedIDs(provider, count: 1500) == (0..<1500).map { batch.dedupeID(at: $0) })
        let info = try await provider.info()
        #expect(info.details["atomicBatches"] == "off", "Courier did not turn allow_atomic on for a stream it found")
        #expect(info.details["atomicBatchCommits"] == "0")
    }

    @Test("updating a stream's limits keeps the settings cnats does not know (allow_atomic on 2.12+)")
    func updateKeepsUnknownSettings() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let creator = try await Self.connect(server.url, stream: "KEEP")
        #expect(try await creator.info().details["atomicBatches"] == (Self.serverHasBatches ? "on" : "off"))
        await creator.shutdown()

        var update = JetStreamIntegrationTests.configuration(server.url, stream: "KEEP")
        update.provisioning = .updateLimits
        update.maxAge = .seconds(3600)
        update.maxEvents = 50_000
        let updater = try await JetStreamProvider.connect(update)
        await updater.shutdown()

        let after = try await Self.connect(server.url, stream: "KEEP")
        defer { Task { await after.shutdown() } }
        #expect(
            try await after.info().details["atomicBatches"] == (Self.serverHasBatches ? "on" : "off"),
            "the limits update left allow_atomic as it was")
        // The update itself happened: a third connection with the old limits and updateLimits
        // would change them back, so the stream now holds the new ones (at most 50 000 events).
        let stored = await after.publishBatch(
            (0..<10).map { JetStreamIntegrationTests.event($0) }, timeout: .seconds(10))
        #expect(stored.allSatisfy { (try? $0.get()) != nil })
    }

    @Test("publishBatch publishes per message even where atomic batches are possible")
    func publishBatchPerMessage() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await Self.connect(server.url, stream: "PERMESSAGE")
        defer { Task { await provider.shutdown() } }
        let results = await provider.publishBatch(
            (0..<1200).map { JetStreamIntegrationTests.event($0) }, timeout: .seconds(30))
        #expect(try results.map { try $0.get().sequence } == Array(1...1200))
        #expect(try await provider.info().details["atomicBatchCommits"] == "0")
    }
}
#endif
