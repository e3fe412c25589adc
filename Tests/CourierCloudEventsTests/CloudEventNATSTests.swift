#if CloudEvents && NATS
import CourierCloudEvents
import CourierCore
import CourierJetStream
import CourierTesting
import Testing

@Suite("CloudEvents through a real nats-server", .natsServer)
struct CloudEventNATSTests {
    static func provider(_ name: String) async throws -> JetStreamProvider {
        var configuration = JetStreamProvider.Configuration(url: try NATSServerTrait.url())
        configuration.stream = name.uppercased()
        configuration.subjectPrefix = name
        return try await JetStreamProvider.connect(configuration)
    }

    static func sample(_ mode: String) throws -> CloudEvent {
        CloudEvent(
            id: "ce-\(mode)-\(UInt32.random(in: 0...UInt32.max))",
            source: "https://example.com/%C3%BCn%C3%AFc%C3%B8d%C3%A9",
            type: "com.example.ünïcødé",
            datacontenttype: "application/json",
            dataschema: "https://example.com/schema",
            subject: "Grüße aus Köln \"100%\"",
            time: try CloudEventTime(rfc3339: "2024-02-29T23:59:59.123456+05:30"),
            data: .json(["emoji": "🚀", "n": 1]),
            extensions: [
                "traceparent": .string("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                "tracestate": .string("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
                "note": .string("naïve café"),
            ]
        )
    }

    /// Binary mode carries no extension types: compare extensions by canonical string.
    static func equivalent(_ a: CloudEvent, _ b: CloudEvent) -> Bool {
        var a = a
        var b = b
        a.extensions = a.extensions.mapValues { .string($0.canonicalString) }
        b.extensions = b.extensions.mapValues { .string($0.canonicalString) }
        return a == b
    }

    @Test(
        "structured and binary round trips, non-ASCII attributes and trace context unchanged",
        arguments: ["structured", "binary"])
    func roundTrip(_ modeName: String) async throws {
        let mode = try #require(CloudEventMode(named: modeName))
        let provider = try await Self.provider("ce\(modeName)")
        let subscription = try await provider.subscribeCloudEvents(consumer: "reader", filter: "ce\(modeName).>")
        let sent = try Self.sample(modeName)
        let ack = try await provider.publish(sent, mode: mode, subject: "ce\(modeName).things.happened")
        let received = try #require(try await subscription.next(timeout: .seconds(10)))
        #expect(received.message.sequence == ack.sequence)
        #expect(Self.equivalent(received.cloudEvent, sent), "\(received.cloudEvent)")
        #expect(
            received.cloudEvent.extensions["traceparent"]?.canonicalString
                == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        let contentType = received.message.headers["content-type"] ?? ""
        #expect(
            modeName == "structured"
                ? contentType.hasPrefix("application/cloudevents+json") : contentType == "application/json")
        if modeName == "binary" { #expect(received.message.headers["ce-id"] == sent.id) }
        try await received.ack()
        await subscription.close()
        await provider.shutdown()
    }

    @Test("a Courier event converted to a CloudEvent comes back identical")
    func eventThroughBinaryMode() async throws {
        let provider = try await Self.provider("ceevent")
        let subscription = try await provider.subscribeCloudEvents(consumer: nil, filter: "ceevent.>")
        let event = Event(
            subject: "ceevent.orders.created", category: "orders", eventType: "order.created", version: 2,
            payload: ["total": 42], summary: "Bestellung", source: "shop",
            metadata: ["traceparent": "00-abc-def-01", "k": "v"])
        try await provider.publish(CloudEvent(event: event), mode: .binary)
        let received = try #require(try await subscription.next(timeout: .seconds(10)))
        #expect(received.message.subject == "ceevent.orders.created")
        #expect(try Event(cloudEvent: received.cloudEvent, prefix: "ceevent") == event)
        try await received.ack()
        await subscription.close()
        await provider.shutdown()
    }

    @Test("a message that is not a CloudEvent is dead-lettered, not delivered")
    func notACloudEvent() async throws {
        let provider = try await Self.provider("cebad")
        let dlq = MemoryDlqHandler()
        let subscription = try await provider.subscribeCloudEvents(
            consumer: "reader", filter: "cebad.>", options: SubscribeOptions(deadLetterHandler: dlq))
        _ = try await provider.publish(
            messages: [OutgoingMessage(subject: "cebad.x.y", payload: Array("hello".utf8), messageID: "plain-1")])
        try await provider.publish(
            CloudEvent(id: "good", source: "/s", type: "t"), mode: .structured, subject: "cebad.x.z")
        let received = try #require(try await subscription.next(timeout: .seconds(10)))
        #expect(received.cloudEvent.id == "good")
        try await received.ack()
        #expect(await eventually(within: .seconds(5)) { dlq.letters().count == 1 })
        #expect(dlq.letters().first?.rawPayload == Array("hello".utf8))
        #expect(dlq.letters().first?.reason.contains("not a valid CloudEvent") == true)
        await subscription.close()
        await provider.shutdown()
    }
}
#endif
