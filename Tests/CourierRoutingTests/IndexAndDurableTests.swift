#if Routing
import CourierCore
import CourierRouting
import CourierTesting
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// A small deterministic generator (SplitMix64), so failures reproduce.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("Trigger index")
struct TriggerIndexTests {
    static let categories = ["orders", "users", "billing", "audit"]
    static let topics = ["created", "paid", "deleted", "eu.west", "us.east.1"]
    static let types = ["order.paid", "order.created", "user.created", ""]
    static let sources = ["shop", "billing", "crm"]

    static func randomFilter(_ random: inout SeededGenerator) -> TriggerFilter {
        var filter = TriggerFilter()
        if Int.random(in: 0..<3, using: &random) == 0 {
            filter.eventType = types.filter { !$0.isEmpty }.randomElement(using: &random)
        }
        if Int.random(in: 0..<2, using: &random) == 0 {
            let category = Int.random(in: 0..<4, using: &random) == 0 ? "*" : categories.randomElement(using: &random)!
            let tail = ["*", ">", "created", "eu.*", "us.>", "paid"].randomElement(using: &random)!
            filter.subjectPattern =
                Int.random(in: 0..<6, using: &random) == 0 ? "events.>" : "events.\(category).\(tail)"
        }
        if Int.random(in: 0..<4, using: &random) == 0 { filter.source = sources.randomElement(using: &random) }
        if Int.random(in: 0..<4, using: &random) == 0 {
            filter.attributes = ["tenant": ["acme", "globex"].randomElement(using: &random)!]
        }
        switch Int.random(in: 0..<6, using: &random) {
        case 0:
            filter.expressions = [
                .exact("type", types.randomElement(using: &random)!.isEmpty ? "a3s.event" : "order.paid")
            ]
        case 1: filter.expressions = [.any([.prefix("source", "sh"), .exact("tenant", "acme")])]
        case 2: filter.expressions = [.not(.suffix("subject", "created"))]
        case 3: filter.expressions = [.all([.exact("region", "eu"), .prefix("category", "ord")])]
        default: break
        }
        return filter
    }

    static func randomEvent(_ random: inout SeededGenerator) -> Event {
        let category = categories.randomElement(using: &random)!
        var metadata: [String: String] = [:]
        if Bool.random(using: &random) { metadata["tenant"] = ["acme", "globex"].randomElement(using: &random)! }
        if Bool.random(using: &random) { metadata["region"] = ["eu", "us"].randomElement(using: &random)! }
        return Event(
            subject: "events.\(category).\(topics.randomElement(using: &random)!)",
            category: category,
            eventType: types.randomElement(using: &random)!,
            payload: nil,
            source: sources.randomElement(using: &random)!,
            metadata: metadata
        )
    }

    @Test("The index finds exactly what a linear scan finds, in the same order", arguments: [1, 2, 3, 4])
    func indexEqualsLinearScan(seed: UInt64) throws {
        var random = SeededGenerator(state: seed)
        let indexed = Broker(configuration: .init(matching: .indexed))
        let linear = Broker(configuration: .init(matching: .linearScan))
        let sink = CollectorSink()
        for i in 0..<400 {
            let trigger = try Trigger(name: "t\(i)", filter: Self.randomFilter(&random), sink: sink)
            try indexed.addTrigger(trigger)
            try linear.addTrigger(trigger)
        }
        // Remove some, so removal rebuilds are covered too.
        for i in stride(from: 0, to: 400, by: 7) {
            try indexed.removeTrigger(named: "t\(i)")
            try linear.removeTrigger(named: "t\(i)")
        }
        var nonEmpty = 0
        for _ in 0..<2000 {
            let event = Self.randomEvent(&random)
            let expected = linear.matchingTriggers(for: event)
            #expect(
                indexed.matchingTriggers(for: event) == expected,
                "\(event.subject) \(event.eventType) \(event.source) \(event.metadata)")
            if !expected.isEmpty { nonEmpty += 1 }
        }
        #expect(nonEmpty > 500, "the generated events exercise matches, not just misses")
    }
}

@Suite("Durable broker on the memory provider")
struct DurableMemoryBrokerTests {
    static func quietLogger() -> Logger { Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }) }

    @Test("Routes every stored event once, acks it, and stops on graceful shutdown")
    func routesAndShutsDown() async throws {
        let provider = MemoryProvider()
        let collected = CollectorSink()
        let broker = Broker(
            configuration: .init(
                name: "router",
                source: Broker.Source(provider: provider, filter: "events.orders.>", concurrency: 8),
                logger: Self.quietLogger()
            )
        )
        try broker.addTrigger(Trigger(name: "all", sink: collected))
        var published: [String] = []
        for i in 0..<50 {
            let event = Event(subject: "events.orders.created", category: "orders", payload: ["i": .int(Int64(i))])
            _ = try await provider.publish(event)
            published.append(event.id)
        }
        let group = ServiceGroup(services: [broker], logger: Self.quietLogger())
        let running = Task { try await group.run() }
        // Generous: with the whole suite on two loaded cores, CPU-heavy tests held both threads
        // of Swift's cooperative pool for many seconds at a time.
        #expect(await eventually(within: .seconds(90)) { collected.events.count >= 50 })
        #expect(Set(collected.events.map(\.id)) == Set(published))
        await group.triggerGracefulShutdown()
        try await running.value

        // Everything was acked: a new broker of the same name has nothing left to route.
        let again = CollectorSink()
        let second = Broker(configuration: .init(name: "router", logger: Self.quietLogger()))
        try second.addTrigger(Trigger(name: "all", sink: again))
        let late = Event(subject: "events.orders.created", category: "orders", payload: nil)
        _ = try await provider.publish(late)
        let secondRun = Task {
            try await second.run(Broker.Source(provider: provider, filter: "events.orders.>"))
        }
        #expect(await eventually(within: .seconds(10)) { !again.events.isEmpty })
        secondRun.cancel()
        _ = try? await secondRun.value
        #expect(again.events.map(\.id) == [late.id], "only the event published after the first broker stopped")
    }

    @Test("An event whose dead-letter hand-off failed is nak'ed and routed again until it is handled")
    func incompleteRoutingIsRedelivered() async throws {
        let provider = MemoryProvider()
        let letters = RefusingDlqHandler(failures: 1)
        let sink = FlakySink(failures: .max)
        let broker = Broker(
            configuration: .init(
                name: "retrying",
                deadLetters: letters,
                logger: Self.quietLogger()
            )
        )
        try broker.addTrigger(Trigger(name: "doomed", sink: sink, delivery: DeliveryPolicy(retries: 0)))
        let event = Event(subject: "events.orders.created", category: "orders", payload: nil)
        _ = try await provider.publish(event)
        let run = Task {
            // An ack wait far beyond the wait below: only the nak can bring the event back in time.
            var source = Broker.Source(provider: provider, nakDelay: .milliseconds(20))
            source.options.ackWait = .seconds(120)
            try await broker.run(source)
        }
        // Generous: at the start of a full parallel run the process is starved for seconds.
        #expect(await eventually(within: .seconds(30)) { (try? await letters.count()) == 1 })
        run.cancel()
        _ = try? await run.value
        #expect(sink.attempts.load(ordering: .relaxed) == 2, "routed, nak'ed after the failed hand-off, routed again")
        #expect(try await letters.list(limit: 1).first?.event.id == event.id)
    }

    @Test("Dead letters go to the provider's dead-letter store, never back into the stream the broker reads")
    func deadLettersStayOutOfTheStream() async throws {
        let provider = MemoryProvider()
        let seen = CollectorSink()
        let broker = Broker(
            configuration: .init(name: "skipper", deadLetters: provider.deadLetters, logger: Self.quietLogger()))
        try broker.addTrigger(Trigger(name: "everything", sink: seen))
        try broker.addTrigger(
            Trigger(
                name: "failing", filter: TriggerFilter(eventType: "bad"), sink: FlakySink(failures: .max),
                delivery: DeliveryPolicy(retries: 0)))
        let bad = Event(subject: "events.orders.bad", category: "orders", eventType: "bad", payload: nil)
        _ = try await provider.publish(bad)
        let run = Task { try await broker.run(Broker.Source(provider: provider)) }
        #expect(await eventually(within: .seconds(30)) { (try? await provider.deadLetters.count()) == 1 })
        let marker = Event(subject: "events.orders.marker", category: "orders", payload: nil)
        _ = try await provider.publish(marker)
        #expect(await eventually(within: .seconds(10)) { seen.events.contains { $0.id == marker.id } })
        run.cancel()
        _ = try? await run.value
        #expect(seen.events.map(\.id) == [bad.id, marker.id], "the broker saw the two events and no dead letter")
        #expect(try await provider.history(filter: nil, limit: 10).map(\.id) == [bad.id, marker.id])
    }
}
#endif
