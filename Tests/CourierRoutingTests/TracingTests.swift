#if Routing
import CourierCore
import CourierRouting
import CourierTesting
import Testing

@Suite("Distributed tracing")
struct TracingTests {
    @Test(
        "A trace continues from publisher to subscriber to sink: publish → consume, publish → consume → route → publish → consume"
    )
    func publisherSubscriberSink() async throws {
        let pipeline = MemoryProvider().traced()
        let broker = Broker(configuration: BrokerTests.quiet())
        try broker.addTrigger(
            Trigger(
                name: "audit",
                filter: TriggerFilter(subjectPattern: "events.orders.>"),
                sink: TopicSink(provider: pipeline, subject: "events.audit.orders")
            )
        )
        let orders = try await pipeline.subscribe("events.orders.>")
        let audit = try await pipeline.subscribe("events.audit.>")

        let (delivered, scope) = try await RecordingTracer.record { () async throws -> (Event, Event) in
            var source = Broker.Source.inline(pipeline, filter: "events.orders.>")
            source.options.deliverPolicy = .all
            let routing = Task { try await broker.run(source) }
            try await pipeline.publish(BrokerTests.event("events.orders.created", type: "order.created"))
            let order = try #require(await orders.next(timeout: .seconds(5)))
            try await order.ack()
            let routed = try #require(await audit.next(timeout: .seconds(5)))
            try await routed.ack()
            routing.cancel()
            _ = try? await routing.value
            return (order.event, routed.event)
        }
        await orders.close()
        await audit.close()

        let spans = scope.finished
        let publish = try #require(spans.first { $0.name == "publish events.orders.created" })
        let route = try #require(spans.first { $0.name == "route events.orders.created" })
        let consumes = spans.filter { $0.name == "consume events.orders.created" }
        let republish = try #require(spans.first { $0.name == "publish events.audit.orders" })
        let consumeAudit = try #require(spans.first { $0.name == "consume events.audit.orders" })
        #expect(publish.kind == "producer" && publish.parentSpanID == nil)
        #expect(publish.attributes["messaging.destination.name"] == "events.orders.created")
        // Two readers of the order: the subscriber and the broker, each consuming it as a child
        // of the publish; a consume span lasts until the decision and records it.
        #expect(
            consumes.count == 2 && consumes.allSatisfy { $0.kind == "consumer" && $0.parentSpanID == publish.spanID })
        #expect(consumes.allSatisfy { $0.attributes["courier.delivery.decision"] == "ack" })
        #expect(consumeAudit.attributes["courier.delivery.decision"] == "ack")
        // One trace throughout, each hop the child of the one before it.
        #expect(Set(spans.map(\.traceID)) == [publish.traceID])
        #expect(consumes.contains { $0.spanID == route.parentSpanID }, "routing runs in the broker's consume span")
        #expect(republish.parentSpanID == route.spanID)
        #expect(consumeAudit.parentSpanID == republish.spanID)
        // What handlers get carries their consume span, as W3C trace context.
        #expect(consumes.contains { delivered.0.metadata["traceparent"] == "00-\(publish.traceID)-\($0.spanID)-01" })
        #expect(delivered.1.metadata["traceparent"] == "00-\(publish.traceID)-\(consumeAudit.spanID)-01")
    }

    @Test("Each delivery's consume span ends with its decision: nak, then term")
    func consumeSpanRecordsDecisions() async throws {
        let bus = EventBus(pipeline: MemoryProvider().traced())
        let subscription = try await bus.pipeline.subscribeDurable(consumer: "decider", filter: "events.jobs.>")
        let ((), scope) = try await RecordingTracer.record {
            try await bus.pipeline.publish(BrokerTests.event("events.jobs.resize"))
            let first = try #require(await subscription.next(timeout: .seconds(5)))
            try await first.inProgress()
            try await first.nak()
            let second = try #require(await subscription.next(timeout: .seconds(5)))
            try await second.term(reason: "corrupt")
        }
        await subscription.close()
        let consumes = scope.finished.filter { $0.name == "consume events.jobs.resize" }
        #expect(consumes.map { $0.attributes["courier.delivery.decision"] } == ["nak", "term"])
        let publish = try #require(scope.finished.first { $0.name == "publish events.jobs.resize" })
        #expect(consumes.allSatisfy { $0.parentSpanID == publish.spanID })
    }

    @Test("Outside a trace nothing is added: no tracer means no trace metadata")
    func untracedEventsStayClean() async throws {
        RecordingTracer.bootstrapOnce()
        let bus = EventBus(pipeline: MemoryProvider())
        let subscription = try await bus.pipeline.subscribe("events.>")
        let event = BrokerTests.event("events.orders.created")
        try await bus.pipeline.publish(event)
        let received = try #require(await subscription.next(timeout: .seconds(5)))
        #expect(received.event == event)
        #expect(received.event.metadata["traceparent"] == nil)
        await subscription.close()
    }
}
#endif
