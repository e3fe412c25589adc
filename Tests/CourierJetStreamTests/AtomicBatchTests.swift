#if NATS
import CourierCore
import CourierJetStream
import CourierTesting
import Testing

/// Atomic batch publishing (nats-server 2.12+): batches stored whole with one acknowledgement,
/// exact per-event results when a batch is refused, and per-message publishing on older servers
/// and on streams Courier did not create.
@Suite("JetStream atomic batch publishing")
struct AtomicBatchTests {
    static var serverHasBatches: Bool { NATSServerHarness.binaryIsAtLeast(2, 12) }

    static func configuration(_ url: String, stream: String) -> JetStreamProvider.Configuration {
        var configuration = JetStreamIntegrationTests.configuration(url, stream: stream)
        configuration.requestTimeout = .seconds(5)
        return configuration
    }

    static func events(_ count: Int, from start: Int = 0) -> [Event] {
        (start..<start + count).map { JetStreamIntegrationTests.event($0, topic: "t\($0 % 7)") }
    }

    static func sequences(_ results: [Result<PublishAck, CourierError>]) throws -> [UInt64] {
        try results.map { try $0.get().sequence }
    }

    @Test(
        "publishBatch stores 2 500 events in order: as three atomic batches of 834/833/833 on 2.12+, per message before"
    )
    func batchesInOrder() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(Self.configuration(server.url, stream: "ATOMIC"))
        defer { Task { await provider.shutdown() } }
        let events = Self.events(2500)
        let results = await provider.publishBatch(events, timeout: .seconds(30))
        let sequences = try Self.sequences(results)
        #expect(sequences == Array(1...2500), "each event's acknowledgement is its own sequence, in order")
        #expect(results.allSatisfy { (try? $0.get().duplicate) == false })
        let info = try await provider.info()
        #expect(info.messages == 2500)
        #expect(info.details["server"] == (try NATSServerHarness.binaryVersion()), "the harness reads its version")
        #expect(info.details["atomicBatches"] == (Self.serverHasBatches ? "on" : "off"))
        #expect(info.details["atomicBatchCommits"] == (Self.serverHasBatches ? "3" : "0"))
        #expect(info.details["atomicBatchFallbacks"] == "0")
        let history = try await provider.history(filter: "events.>", limit: 2500)
        #expect(history.map(\.id) == events.map(\.id), "stored in the order given")
    }

    @Test("a batch sent again is refused whole and reported per event as duplicates with their sequences")
    func resentBatchIsDuplicate() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(Self.configuration(server.url, stream: "RESENT"))
        defer { Task { await provider.shutdown() } }
        let events = Self.events(1200)
        let first = try Self.sequences(await provider.publishBatch(events, timeout: .seconds(30)))
        // Half old, half new: the old half makes the server refuse the atomic batch; the events
        // then go per message, so the new half is stored and the old half reported duplicate.
        let mixed = Array(events[600...]) + Self.events(600, from: 1200)
        let again = await provider.publishBatch(mixed, timeout: .seconds(30))
        let acks = try again.map { try $0.get() }
        #expect(acks.prefix(600).allSatisfy { $0.duplicate })
        #expect(acks.prefix(600).map(\.sequence) == Array(first[600...]), "duplicates name the stored sequence")
        #expect(acks.suffix(600).allSatisfy { !$0.duplicate })
        #expect(acks.suffix(600).map(\.sequence) == Array(1201...1800))
        let info = try await provider.info()
        #expect(info.messages == 1800, "nothing stored twice")
        if Self.serverHasBatches {
            #expect(Int(info.details["atomicBatchFallbacks"] ?? "0") ?? 0 >= 1, "the refused batch went per message")
        }
    }

    @Test("an existing stream without allow_atomic is used as it is, per message")
    func existingStreamUnchanged() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        var plain = Self.configuration(server.url, stream: "OPERATOR")
        plain.atomicBatchPublish = false
        let creator = try await JetStreamProvider.connect(plain)
        #expect(try await creator.info().details["atomicBatches"] == "off")
        await creator.shutdown()

        let provider = try await JetStreamProvider.connect(Self.configuration(server.url, stream: "OPERATOR"))
        defer { Task { await provider.shutdown() } }
        let results = await provider.publishBatch(Self.events(1500), timeout: .seconds(30))
        #expect(try Self.sequences(results) == Array(1...1500))
        let info = try await provider.info()
        #expect(info.details["atomicBatches"] == "off", "Courier did not turn allow_atomic on for a stream it found")
        #expect(info.details["atomicBatchCommits"] == "0")
    }
}
#endif
