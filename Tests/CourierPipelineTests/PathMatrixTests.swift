#if NATS && Encryption && CloudEvents && Routing
import CourierCloudEvents
import CourierCore
import CourierIngest
import CourierCrypto
import CourierJetStream
import CourierRouting
import CourierTesting
import Foundation
import Logging
import Testing

/// Every path to the provider goes through the pipeline: with an encrypting pipeline nothing
/// written to the stream (events, routed copies, dead letters) contains the plaintext; with a
/// validating one an invalid event is refused on every path that takes typed events.
@Suite("One pipeline: every path to the provider passes every layer", .natsServer)
struct PathMatrixTests {
    static func provider(_ stream: String) async throws -> JetStreamProvider {
        var configuration = JetStreamProvider.Configuration(url: try NATSServerTrait.url())
        configuration.stream = stream
        configuration.subjectPrefix = stream.lowercased()
        configuration.logger.logLevel = .warning
        return try await JetStreamProvider.connect(configuration)
    }

    static let quiet: Logger = {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }()

    /// A sink that always fails, so its trigger dead-letters what it matches.
    struct FailingSink: EventSink {
        var description: String { "failing" }
        func deliver(_ event: Event) async throws -> Event? {
            throw CourierError(.deliveryFailed, "sink refuses \(event.id)")
        }
    }

    @Test("with an encrypting pipeline, no path stores the plaintext")
    func encryptionOnEveryPath() async throws {
        let provider = try await Self.provider("MATRIX")
        let p = provider.subjectPrefix
        let secret = "SECRET-\(UInt32.random(in: 0...UInt32.max))"
        let pipeline = provider.encrypting(
            AESGCMEncryptor(keyRing: try KeyRing([EncryptionKey.generate(id: "k1")])))
        func payload(_ path: String) -> JSONValue { ["secret": .string(secret), "path": .string(path)] }
        var expected: Set<String> = []

        // 1. EventBus
        let bus = EventBus(pipeline: pipeline)
        try await bus.publish(category: "matrix", topic: "bus", source: "test", payload: payload("bus"))
        expected.insert("bus")
        // 2. The pipeline as a provider, one event and a batch
        try await pipeline.publish(
            Event(subject: "\(p).matrix.provider", category: "matrix", payload: payload("provider")))
        let batch = await pipeline.publishBatch([
            Event(subject: "\(p).matrix.batch", category: "matrix", payload: payload("batch"))
        ])
        #expect(throws: Never.self) { try batch[0].get() }
        expected.formUnion(["provider", "batch"])
        // 3. The ingest core, through each adapter
        for (name, adapter) in [
            ("ingest-provider", ProviderAdapter(provider: pipeline) as any Adapter),
            ("ingest-jetstream", try JetStreamAdapter(pipeline: pipeline)),
        ] {
            let ingest = try IngestBus(configuration: .init(shards: 1, adapter: adapter, logger: Self.quiet))
            try ingest.ingestRaw(
                RawEvent(Event(subject: "\(p).matrix.\(name)", category: "matrix", payload: payload(name))))
            let stats = await ingest.shutdown()
            #expect(stats.eventsDispatched == 1, "\(name): \(stats)")
            expected.insert(name)
        }
        // 4. CloudEvents
        try await pipeline.publish(
            CloudEvent(
                id: "ce-matrix-\(UInt32.random(in: 0...UInt32.max))", source: "test", type: "matrix.cloudevent",
                data: .json(payload("cloudevent"))))
        expected.insert("cloudevent")
        let binding = await #expect(throws: CourierError.self) {
            try await pipeline.publish(
                CloudEvent(id: "ce2", source: "test", type: "t", data: .json(payload("binding"))), mode: .binary)
        }
        #expect(binding?.code == .invalidConfiguration, "the NATS binding would send the data in the clear")

        // 5.–7. Routing, inline and durable, each with a topic sink and a failing trigger
        for mode in ["inline", "durable"] {
            let broker = Broker(
                configuration: .init(
                    name: "matrix-\(mode)",
                    delivery: DeliveryPolicy(retries: 0, backoff: .linear(base: .zero, maximum: .zero)),
                    deadLetters: pipeline.deadLetters, logger: Self.quiet))
            try broker.addTrigger(
                Trigger(
                    name: "copy-\(mode)", filter: TriggerFilter(subjectPattern: "\(p).route\(mode).>"),
                    sink: try TopicSink(provider: pipeline, subject: "\(p).routed.\(mode)")))
            try broker.addTrigger(
                Trigger(
                    name: "fail-\(mode)", filter: TriggerFilter(subjectPattern: "\(p).route\(mode).>"),
                    sink: FailingSink()))
            var source =
                mode == "inline"
                ? Broker.Source.inline(pipeline, filter: "\(p).route\(mode).>")
                : Broker.Source.durable(pipeline, filter: "\(p).route\(mode).>")
            source.options.deliverPolicy = .all
            let run = Task { try await broker.run(source) }
            try await pipeline.publish(
                Event(subject: "\(p).route\(mode).x", category: "route\(mode)", payload: payload("route-\(mode)")))
            #expect(
                await eventually(within: .seconds(15)) {
                    let routed = (try? await provider.history(filter: "\(p).routed.\(mode)", limit: 10)) ?? []
                    let letters = (try? await provider.deadLetterQueue.stored(limit: 100)) ?? []
                    return routed.count == 1 && letters.contains { $0.letter.consumer == "fail-\(mode)" }
                }, "\(mode): routed copy and routing dead letter")
            run.cancel()
            _ = try? await run.value
            expected.formUnion(["route-\(mode)"])
        }

        // Everything stored, read raw: encrypted, never the plaintext.
        let info = try await provider.info()
        let stored = try await provider.readStored(from: 1, limit: Int(info.lastSequence) + 10)
        #expect(stored.count >= expected.count + 2, "events plus the two routed copies")
        for message in stored {
            let text = String(decoding: message.payload, as: UTF8.self)
            #expect(!text.contains(secret), "plaintext stored on \(message.subject)")
            #expect(text.contains("\"encrypted\":true"), "not encrypted: \(message.subject)")
        }
        let letters = try await provider.deadLetterQueue.stored(limit: 100)
        #expect(letters.count >= 2)
        for stored in letters {
            #expect(!stored.letter.event.payload.description.contains(secret), "plaintext dead letter")
            #expect(stored.letter.event.payload["encrypted"] == true)
        }
        // Read through the pipeline, everything decrypts to what was published.
        let read = try await pipeline.history(filter: nil, limit: 100)
        let paths = Set(read.compactMap { event -> String? in event.payload["path"]?.stringValue })
        #expect(paths.isSuperset(of: expected.filter { !$0.hasPrefix("route") }), "\(paths)")
        await provider.shutdown()
    }

    @Test("with a validating pipeline, an invalid typed event is refused on every path")
    func validationOnEveryPath() async throws {
        let provider = try await Self.provider("VALIDATED")
        let p = provider.subjectPrefix
        let registry = MemorySchemaRegistry()
        try registry.register(EventSchema(eventType: "order.paid", version: 1, requiredFields: ["amount"]))
        let pipeline = provider.validating(registry)
        func invalid(_ subject: String) -> Event {
            Event(subject: subject, category: "orders", eventType: "order.paid", payload: ["note": "no amount"])
        }
        let bus = EventBus(pipeline: pipeline)
        await #expect(throws: CourierError.self) {
            try await bus.publish(category: "orders", topic: "paid", eventType: "order.paid", payload: ["note": "x"])
        }
        let direct = await #expect(throws: CourierError.self) {
            try await pipeline.publish(invalid("\(p).orders.paid"))
        }
        #expect(direct?.code == .validationFailed)
        let batch = await pipeline.publishBatch([invalid("\(p).orders.paid")])
        #expect(throws: CourierError.self) { try batch[0].get() }
        await #expect(throws: CourierError.self) {
            try await pipeline.publish(CloudEvent(event: invalid("\(p).orders.paid")))
        }
        for (name, adapter) in [
            ("provider", ProviderAdapter(provider: pipeline) as any Adapter),
            ("jetstream", try JetStreamAdapter(pipeline: pipeline)),
        ] {
            let ingest = try IngestBus(configuration: .init(shards: 1, adapter: adapter, logger: Self.quiet))
            try ingest.ingestRaw(RawEvent(invalid("\(p).orders.\(name)")))
            let stats = await ingest.shutdown()
            #expect(stats.eventsDispatched == 0 && stats.eventsDeadLettered == 1, "\(name): \(stats)")
        }
        // A topic sink republishing an invalid event through the pipeline fails, so its trigger
        // dead-letters the event instead.
        let letters = MemoryDlqHandler()
        let broker = Broker(
            configuration: .init(delivery: DeliveryPolicy(retries: 0), deadLetters: letters, logger: Self.quiet))
        try broker.addTrigger(Trigger(name: "copy", sink: try TopicSink(provider: pipeline, subject: "\(p).copies.x")))
        let result = await broker.route(invalid("\(p).orders.routed"))
        #expect(result.deadLettered == 1 && letters.letters().first?.reason.contains("order.paid") == true)
        #expect(try await provider.info().messages == 0, "nothing invalid was stored")
        await provider.shutdown()
    }
}
#endif
