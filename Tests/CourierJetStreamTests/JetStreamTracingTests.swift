#if NATS
import CourierCore
import CourierJetStream
import CourierTesting
import Testing

@Suite("Trace context over JetStream", .timeLimit(.minutes(2)))
struct JetStreamTracingTests {
    @Test("traceparent travels in the NATS headers and in the event; the subscriber's span is the publisher's child")
    func traceparentInHeaders() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(
            JetStreamIntegrationTests.configuration(server.url, stream: "TRACED"))
        let bus = EventBus(pipeline: provider.traced())
        let raw = try await provider.subscribeMessages(
            consumer: "raw", filter: "events.>", options: SubscribeOptions(deliverPolicy: .all))
        let events = try await bus.pipeline.subscribeDurable(consumer: "traced", filter: "events.>")

        let (received, scope) = try await RecordingTracer.record { () async throws -> (PendingMessage, Event) in
            try await bus.pipeline.publish(JetStreamIntegrationTests.event(1))
            let message = try #require(await raw.next(timeout: .seconds(10)))
            try await message.ack()
            let pending = try #require(await events.next(timeout: .seconds(10)))
            try await pending.ack()
            return (message, pending.event)
        }
        let publish = try #require(scope.finished.first { $0.name == "publish events.orders.created" })
        let consume = try #require(scope.finished.first { $0.name == "consume events.orders.created" })
        #expect(publish.attributes["messaging.system"] == "jetstream")
        #expect(received.0.headers["traceparent"] == "00-\(publish.traceID)-\(publish.spanID)-01")
        #expect(consume.traceID == publish.traceID && consume.parentSpanID == publish.spanID)
        #expect(received.1.metadata["traceparent"] == "00-\(publish.traceID)-\(consume.spanID)-01")
        await raw.close()
        await events.close()
        await provider.shutdown()
    }
}
#endif
