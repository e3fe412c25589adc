import CourierCore
import CourierTesting
import Testing

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

@Suite("EventBus")
struct EventBusTests {
    static func temporaryPath(_ name: String) -> String {
        "/tmp/courier-test-\(UInt64.random(in: 0...UInt64.max))-\(name)"
    }

    @Test("publish builds the subject and lists events by category")
    func publishAndList() async throws {
        let bus = EventBus(pipeline: MemoryProvider().metered())
        let event = try await bus.publish(
            category: "market", topic: "forex", summary: "EUR", source: "reuters", payload: ["rate": 1.08])
        #expect(event.subject == "events.market.forex")
        try await bus.publish(category: "news", topic: "tech", summary: "n", source: "s", payload: nil)
        #expect(try await bus.listEvents(category: "market", limit: 10) == [event])
        #expect(try await bus.listEvents(limit: 10).count == 2)
        #expect(try await bus.counts(limit: 10) == EventCounts(total: 2, categories: ["market": 1, "news": 1]))
        #expect(bus.metrics?.snapshot().publishCount == 2)
        #expect(await bus.health())
        let error = await #expect(throws: CourierError.self) {
            try await bus.publish(category: "bad category", topic: "x", summary: "", source: "", payload: nil)
        }
        #expect(error?.code == .invalidSubject)
    }

    @Test("subscriptions persist in a file and restore in a new bus")
    func restoreFromFile() async throws {
        let path = Self.temporaryPath("state.json")
        let provider = MemoryProvider()
        var configuration = EventBus.Configuration()
        configuration.stateStore = FileStateStore(path: path)
        let first = EventBus(pipeline: provider, configuration: configuration)
        try await first.updateSubscription(
            SubscriptionFilter(
                subscriberID: "billing.worker", subjects: ["events.orders.>"], durable: true,
                options: SubscribeOptions(maxDeliver: 3, ackWait: .seconds(5))))
        try await first.publish(category: "orders", topic: "created", summary: "1", source: "s", payload: nil)
        let subscriptions = try await first.createSubscriber("billing.worker")
        #expect(subscriptions.count == 1)
        try await #require(await subscriptions[0].next(timeout: .seconds(5))).ack()
        await subscriptions[0].close()

        // A new process: same provider (stream), new bus restored from the file.
        let second = EventBus(pipeline: provider, configuration: configuration)
        #expect(try await second.restoreSubscriptions() == 1)
        #expect(second.subscription("billing.worker")?.options?.maxDeliver == 3)
        let created = try await second.publish(
            category: "orders", topic: "paid", summary: "2", source: "s", payload: nil)
        let resumed = try await second.createSubscriber("billing.worker")
        let next = try #require(await resumed[0].next(timeout: .seconds(5)))
        #expect(next.event.id == created.id)  // resumed after the acked event
        try await next.ack()
        await resumed[0].close()

        try await second.removeSubscription("billing.worker")
        #expect(second.subscription("billing.worker") == nil)
        let third = EventBus(pipeline: provider, configuration: configuration)
        #expect(try await third.restoreSubscriptions() == 0)
        await #expect(throws: CourierError.self) { _ = try await third.createSubscriber("billing.worker") }
    }

    @Test("exhausted deliveries of bus subscribers are dead-lettered and counted")
    func deadLetters() async throws {
        let dlq = MemoryDlqHandler()
        var configuration = EventBus.Configuration()
        configuration.deadLetterHandler = dlq
        let bus = EventBus(pipeline: MemoryProvider().metered(), configuration: configuration)
        try await bus.updateSubscription(
            SubscriptionFilter(subscriberID: "w", subjects: ["events.jobs.>"], options: SubscribeOptions(maxDeliver: 2))
        )
        let event = try await bus.publish(category: "jobs", topic: "run", summary: "", source: "", payload: nil)
        let subscription = try await bus.createSubscriber("w")[0]
        try await #require(await subscription.next(timeout: .seconds(5))).nak()
        try await #require(await subscription.next(timeout: .seconds(5))).nak()
        #expect(await eventually(within: .seconds(5)) { dlq.letters().count == 1 })
        let letter = try #require(dlq.letters().first)
        #expect(letter.event.id == event.id)
        #expect(letter.attempts == 2)
        #expect(letter.originalSubject == "events.jobs.run")
        #expect(bus.metrics?.snapshot().dlqCount == 1)
        await subscription.close()
    }

    @Test("registrations are validated")
    func invalidRegistrations() async throws {
        let bus = EventBus(pipeline: MemoryProvider())
        await #expect(throws: CourierError.self) {
            try await bus.updateSubscription(SubscriptionFilter(subscriberID: "", subjects: ["events.>"]))
        }
        await #expect(throws: CourierError.self) {
            try await bus.updateSubscription(SubscriptionFilter(subscriberID: "x", subjects: []))
        }
        let error = await #expect(throws: CourierError.self) {
            try await bus.updateSubscription(SubscriptionFilter(subscriberID: "x", subjects: ["events.>.x"]))
        }
        #expect(error?.input == "events.>.x")
        await #expect(throws: CourierError.self) { try await bus.removeSubscription("nobody") }
    }

    @Test("a validating pipeline checks typed events before publishing; rejected ones are counted and not stored")
    func schemaValidation() async throws {
        let registry = MemorySchemaRegistry()
        try registry.register(
            EventSchema(
                eventType: "order.created", version: 1, requiredFields: ["id", "amount"],
                fieldTypes: ["amount": .number]))
        let bus = EventBus(pipeline: MemoryProvider().validating(registry).metered())
        try await bus.publish(
            category: "orders", topic: "created", eventType: "order.created", version: 1,
            summary: "", source: "", payload: ["id": "o1", "amount": 3])
        let error = await #expect(throws: CourierError.self) {
            try await bus.publish(
                category: "orders", topic: "created", eventType: "order.created", version: 1,
                summary: "", source: "", payload: ["id": "o2"])
        }
        #expect(error?.code == .validationFailed)
        #expect(error?.input == "amount")
        struct Order: Encodable { var id: String; var amount: Double }
        try await bus.publish(
            category: "orders", topic: "created", eventType: "order.created", version: 1,
            summary: "", source: "", payload: try JSONValue(encoding: Order(id: "o3", amount: 1.5)))
        #expect(bus.metrics?.snapshot().validationErrors == 1)
        #expect(try await bus.listEvents(category: "orders").count == 2)
    }

    @Test("the state file is replaced atomically and unreadable state is a typed error")
    func stateFile() async throws {
        let path = Self.temporaryPath("atomic.json")
        let store = FileStateStore(path: path)
        #expect(try await store.load().isEmpty)
        try store.save([SubscriptionFilter(subscriberID: "a", subjects: ["events.>"])])
        try store.save([SubscriptionFilter(subscriberID: "b", subjects: ["events.x.>"], durable: false)])
        let loaded = try await store.load()
        #expect(loaded.map(\.subscriberID) == ["b"])
        #expect(loaded.first?.durable == false)
        try Data("{not json".utf8).write(to: URL(fileURLWithPath: path))
        let error = await #expect(throws: CourierError.self) { try await store.load() }
        #expect(error?.code == .storageFailed)
        #expect(error?.input == path)
    }
}
