#if Routing
import CourierCore
import CourierRouting
import CourierTesting
import Testing

@Suite("Distributed tracing")
struct TracingTests {
    @Test("A trace continues from publisher to subscriber to sink: publish → consume, publish → route → sink → consume")
    func publisherSubscriberSink() async throws {
        let provider = MemoryProvider()
        let broker = Broker(configuration: BrokerTests.quiet())
        try broker.addTrigger(
            Trigger(
                name: "audit",
                filter: TriggerFilter(subjectPattern: "events.orders.>"),
                sink: TopicSink(provider: provider, subject: "events.audit.orders")
            )
        )
        var configuration = EventBus.Configuration()
        configuration.router = broker
        let bus = EventBus(provider: provider, configuration: configuration)
        let orders = try await bus.subscribe("events.orders.>")
        let audit = try await bus.subscribe("events.audit.>")

        let (delivered, scope) = try await RecordingTracer.record { () async throws -> (Event, Event) in
            try await bus.publishEvent(BrokerTests.event("events.orders.created", type: "order.created"))
            let order = try #require(await orders.next(timeout: .seconds(5)))
            try await order.ack()
            let routed = try #require(await audit.next(timeout: .seconds(5)))
            try await routed.ack()
            return (order.event, routed.event)
        }
        await orders.close()
        await audit.close()

        let spans = scope.finished
        let publish = try #require(spans.first { $0.name == "publish events.orders.created" })
        let route = try #require(spans.first { $0.name == "route events.orders.created" })
        let consumeOrder = try #require(spans.first { $0.name == "consume events.orders.created" })
        let consumeAudit = try #require(spans.first { $0.name == "consume events.audit.orders" })
        #expect(publish.kind == "producer" && publish.parentSpanID == nil)
        #expect(publish.attributes["messaging.destination.name"] == "events.orders.created")
        #expect(consumeOrder.kind == "consumer")
        // A consume span lasts until the handler's decision, and records it.
        #expect(consumeOrder.attributes["courier.delivery.decision"] == "ack")
        #expect(consumeAudit.attributes["courier.delivery.decision"] == "ack")
        // One trace throughout, each hop the child of the one before it.
        #expect(Set(spans.map(\.traceID)) == [publish.traceID])
        #expect(route.parentSpanID == publish.spanID)
        #expect(consumeOrder.parentSpanID == publish.spanID)
        #expect(consumeAudit.parentSpanID == route.spanID)
        // What handlers get carries the consume span, as W3C trace context.
        #expect(delivered.0.metadata["traceparent"] == "00-\(publish.traceID)-\(consumeOrder.spanID)-01")
        #expect(delivered.1.metadata["traceparent"] == "00-\(publish.traceID)-\(consumeAudit.spanID)-01")
    }

    @Test("Each delivery's consume span ends with its decision: nak, then term")
    func consumeSpanRecordsDecisions() async throws {
        let provider = MemoryProvider()
        let bus = EventBus(provider: provider)
        let subscription = try await bus.subscribeDurable(consumer: "decider", filter: "events.jobs.>")
        let ((), scope) = try await RecordingTracer.record {
            try await bus.publishEvent(BrokerTests.event("events.jobs.resize"))
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
        let bus = EventBus(provider: MemoryProvider())
        let subscription = try await bus.subscribe("events.>")
        let event = BrokerTests.event("events.orders.created")
        try await bus.publishEvent(event)
        let received = try #require(await subscription.next(timeout: .seconds(5)))
        #expect(received.event == event)
        #expect(received.event.metadata["traceparent"] == nil)
        await subscription.close()
    }
}
#endif
