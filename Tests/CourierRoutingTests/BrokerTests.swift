#if Routing
import CourierCore
import CourierRouting
import CourierTesting
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// A sink that fails its first `failures` deliveries.
final class FlakySink: EventSink {
    let description = "flaky"
    private let remaining: Atomic<Int>
    let attempts = Atomic<Int>(0)

    init(failures: Int) { remaining = Atomic(failures) }

    func deliver(_ event: Event) async throws -> Event? {
        attempts.add(1, ordering: .relaxed)
        if remaining.subtract(1, ordering: .relaxed).newValue >= 0 {
            throw CourierError(.deliveryFailed, "flaky sink refused \(event.id)", input: event.id)
        }
        return nil
    }
}

/// A dead-letter handler that refuses its first `failures` letters.
final class RefusingDlqHandler: DlqHandler {
    private let remaining: Atomic<Int>
    let taken = MemoryDlqHandler()

    init(failures: Int = .max) { remaining = Atomic(failures) }

    func handle(_ letter: DeadLetterEvent) async throws {
        if remaining.subtract(1, ordering: .relaxed).newValue >= 0 {
            throw CourierError(.storageFailed, "dead-letter store unavailable", input: letter.event.id)
        }
        try await taken.handle(letter)
    }

    func list(limit: Int) async throws -> [DeadLetterEvent] { try await taken.list(limit: limit) }
    func count() async throws -> Int { try await taken.count() }
}

@Suite("Broker")
struct BrokerTests {
    static func event(_ subject: String, type: String = "", source: String = "shop", metadata: [String: String] = [:])
        -> Event
    {
        Event(
            subject: subject,
            category: String(subject.split(separator: ".")[1]),
            eventType: type,
            payload: ["n": 1],
            source: source,
            metadata: metadata
        )
    }

    static func quiet(_ configuration: Broker.Configuration = .init()) -> Broker.Configuration {
        var configuration = configuration
        configuration.logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        return configuration
    }

    @Test("Routes each event to exactly the matching 0, 1 or 2 of 3 triggers, unmodified")
    func oneOrTwoOfThree() async throws {
        let broker = Broker(configuration: Self.quiet())
        let paid = CollectorSink(), orders = CollectorSink(), billing = CollectorSink()
        try broker.addTrigger(Trigger(name: "paid", filter: TriggerFilter(eventType: "order.paid"), sink: paid))
        try broker.addTrigger(
            Trigger(name: "orders", filter: TriggerFilter(subjectPattern: "events.orders.>"), sink: orders))
        try broker.addTrigger(Trigger(name: "billing", filter: TriggerFilter(source: "billing"), sink: billing))

        let both = Self.event("events.orders.paid", type: "order.paid")
        var result = await broker.route(both)
        #expect(result.matched == ["paid", "orders"])
        #expect(result.delivered == 2 && result.failed == 0 && result.deadLettered == 0)

        let one = Self.event("events.users.created", source: "billing")
        result = await broker.route(one)
        #expect(result.matched == ["billing"])
        #expect(result.delivered == 1)

        let none = Self.event("events.users.deleted")
        result = await broker.route(none)
        #expect(result.matched.isEmpty && result.delivered == 0)

        #expect(paid.events == [both])
        #expect(orders.events == [both], "sinks receive the event exactly as published")
        #expect(billing.events == [one])
        #expect(broker.metrics(forTrigger: "paid")?.matched == 1)
        #expect(broker.metrics(forTrigger: "paid")?.delivered == 1)
        #expect(broker.metrics(forTrigger: "billing")?.matched == 1)
    }

    @Test("Triggers are added, listed and removed at runtime; names are unique")
    func addRemoveList() async throws {
        let broker = Broker(configuration: Self.quiet())
        let sink = CollectorSink()
        try broker.addTrigger(Trigger(name: "a", filter: TriggerFilter(subjectPattern: "events.a.>"), sink: sink))
        try broker.addTrigger(Trigger(name: "b", filter: TriggerFilter(subjectPattern: "events.>"), sink: sink))
        let duplicate = try #require(throws: CourierError.self) {
            try broker.addTrigger(Trigger(name: "a", sink: sink))
        }
        #expect(duplicate.code == .alreadyExists && duplicate.input == "a")
        #expect(broker.triggers.map(\.name) == ["a", "b"])
        #expect(broker.matchingTriggers(for: Self.event("events.a.x")) == ["a", "b"])
        try broker.removeTrigger(named: "a")
        #expect(broker.triggers.map(\.name) == ["b"])
        #expect(broker.matchingTriggers(for: Self.event("events.a.x")) == ["b"])
        #expect(throws: CourierError.self) { try broker.removeTrigger(named: "a") }
        #expect(broker.metrics(forTrigger: "a") == nil)
    }

    @Test("Concurrent adds, removes and routes are safe")
    func concurrentChanges() async throws {
        let broker = Broker(configuration: Self.quiet())
        let sink = CollectorSink()
        try broker.addTrigger(
            Trigger(name: "stable", filter: TriggerFilter(subjectPattern: "events.stable.>"), sink: sink))
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for i in 0..<300 {
                    try? broker.addTrigger(
                        Trigger(name: "t\(i)", filter: TriggerFilter(subjectPattern: "events.t\(i).>"), sink: sink))
                    if i % 3 == 0 { try? broker.removeTrigger(named: "t\(i)") }
                }
            }
            for _ in 0..<4 {
                group.addTask {
                    for _ in 0..<200 { _ = await broker.route(Self.event("events.stable.x")) }
                }
            }
        }
        #expect(sink.events.count == 800, "the stable trigger saw every routed event exactly once")
        #expect(broker.triggers.count == 1 + 200)
    }

    @Test("The sinks of one event run concurrently")
    func sinksRunConcurrently() async throws {
        let broker = Broker(configuration: Self.quiet())
        let arrived = Atomic<Int>(0)
        let rendezvous = InProcessSink { event in
            arrived.add(1, ordering: .relaxed)
            // Each sink waits for the other: only possible when both run at once.
            guard
                await eventually(
                    within: .seconds(10), every: .milliseconds(1), { arrived.load(ordering: .relaxed) == 2 })
            else {
                throw CourierError(.timeout, "the other sink never started", input: event.id)
            }
            return nil
        }
        let noRetry = DeliveryPolicy(retries: 0)
        try broker.addTrigger(Trigger(name: "left", sink: rendezvous, delivery: noRetry))
        try broker.addTrigger(Trigger(name: "right", sink: rendezvous, delivery: noRetry))
        let result = await broker.route(Self.event("events.x.y"))
        #expect(result.delivered == 2, "\(result)")
    }

    @Test("A failing sink is retried with exponential backoff on the injected clock, then dead-lettered")
    func exponentialBackoffThenDeadLetter() async throws {
        let clock = ManualClock()
        let letters = MemoryDlqHandler()
        let broker = Broker(configuration: Self.quiet(.init(deadLetters: letters, clock: clock)))
        let sink = FlakySink(failures: .max)
        let policy = DeliveryPolicy(
            retries: 3,
            backoff: .exponential(base: .milliseconds(100), maximum: .milliseconds(250)),
            attemptTimeout: nil
        )
        try broker.addTrigger(
            Trigger(
                name: "flaky", filter: TriggerFilter(subjectPattern: "events.orders.>"), sink: sink, delivery: policy))
        let event = Self.event("events.orders.created", metadata: ["tenant": "acme"])
        let started = Event.currentTimestamp()
        let routing = Task { await broker.route(event) }
        defer { routing.cancel() }  // a failed require must not leave the route waiting

        try #require(await clock.waitForSleepers(1, within: .seconds(60)) == [.milliseconds(100)])
        #expect(sink.attempts.load(ordering: .relaxed) == 1)
        clock.advance(by: .milliseconds(99))
        #expect(clock.pendingSleeps == [.milliseconds(1)], "no retry before the backoff elapsed")
        #expect(sink.attempts.load(ordering: .relaxed) == 1)
        clock.advance(by: .milliseconds(1))
        try #require(await clock.waitForSleepers(1, within: .seconds(60)) == [.milliseconds(200)])
        #expect(sink.attempts.load(ordering: .relaxed) == 2)
        clock.advance(by: .milliseconds(200))
        try #require(
            await clock.waitForSleepers(1, within: .seconds(60)) == [.milliseconds(250)], "capped at the maximum")
        #expect(sink.attempts.load(ordering: .relaxed) == 3)
        clock.advance(by: .milliseconds(250))

        let result = await routing.value
        #expect(sink.attempts.load(ordering: .relaxed) == 4)
        #expect(result.delivered == 0 && result.deadLettered == 1 && result.failed == 0)
        let letter = try #require(try await letters.list(limit: 10).first)
        #expect(letter.event == event)
        #expect(letter.attempts == 4)
        #expect(letter.consumer == "flaky")
        #expect(letter.reason.contains("trigger 'flaky'") && letter.reason.contains("flaky sink refused"))
        let firstFailure = try #require(letter.firstFailureAt)
        #expect(firstFailure >= started && firstFailure <= letter.deadLetteredAt)

        let dlq = letter.asEvent(deadLetterPrefix: DeadLetterEvent.defaultSubjectPrefix(forEventPrefix: "events"))
        #expect(dlq.subject == "events-dlq.events.orders.created")
        #expect(dlq.metadata[DeadLetterEvent.MetadataKey.reason] == letter.reason)
        #expect(dlq.metadata[DeadLetterEvent.MetadataKey.originalID] == event.id)
        #expect(dlq.metadata[DeadLetterEvent.MetadataKey.originalSubject] == "events.orders.created")
        #expect(dlq.metadata[DeadLetterEvent.MetadataKey.attempts] == "4")
        #expect(dlq.metadata[DeadLetterEvent.MetadataKey.firstFailureAt] == String(firstFailure))
        #expect(dlq.metadata["tenant"] == "acme")

        let metrics = try #require(broker.metrics(forTrigger: "flaky"))
        #expect(metrics.matched == 1 && metrics.retried == 3 && metrics.deadLettered == 1 && metrics.delivered == 0)
    }

    @Test("Linear backoff from the broker default; a sink that recovers is delivered, not dead-lettered")
    func linearBackoffRecovers() async throws {
        let clock = ManualClock()
        let letters = MemoryDlqHandler()
        let policy = DeliveryPolicy(
            retries: 4, backoff: .linear(base: .milliseconds(50), maximum: .seconds(1)), attemptTimeout: nil)
        let broker = Broker(configuration: Self.quiet(.init(delivery: policy, deadLetters: letters, clock: clock)))
        let sink = FlakySink(failures: 2)
        try broker.addTrigger(Trigger(name: "recovering", sink: sink))
        let routing = Task { await broker.route(Self.event("events.x.y")) }
        defer { routing.cancel() }  // a failed require must not leave the route waiting
        try #require(await clock.waitForSleepers(1, within: .seconds(60)) == [.milliseconds(50)])
        clock.advance(by: .milliseconds(50))
        try #require(await clock.waitForSleepers(1, within: .seconds(60)) == [.milliseconds(100)])
        clock.advance(by: .milliseconds(100))
        let result = await routing.value
        #expect(result.delivered == 1 && result.deadLettered == 0)
        #expect(sink.attempts.load(ordering: .relaxed) == 3)
        #expect(try await letters.count() == 0)
        #expect(broker.metrics(forTrigger: "recovering")?.retried == 2)
    }

    @Test("An attempt that outlives its timeout fails and counts as an attempt")
    func attemptTimeout() async throws {
        let clock = ManualClock()
        let letters = MemoryDlqHandler()
        let broker = Broker(configuration: Self.quiet(.init(deadLetters: letters, clock: clock)))
        let hanging = InProcessSink("hanging") { _ in
            try await Task.sleep(for: .seconds(3600))
            return nil
        }
        try broker.addTrigger(
            Trigger(name: "slow", sink: hanging, delivery: DeliveryPolicy(retries: 0, attemptTimeout: .seconds(2))))
        let routing = Task { await broker.route(Self.event("events.x.y")) }
        defer { routing.cancel() }  // a failed require must not leave the route waiting
        try #require(await clock.waitForSleepers(1, within: .seconds(60)) == [.seconds(2)])
        clock.advance(by: .seconds(2))
        let result = await routing.value
        #expect(result.deadLettered == 1)
        let letter = try #require(try await letters.list(limit: 1).first)
        #expect(letter.reason.contains("took longer than"), "\(letter.reason)")
    }

    @Test("When even the dead-letter handler fails, the failure surfaces as a result, an error and a metric")
    func deadLetterFailureSurfaces() async throws {
        let broker = Broker(configuration: Self.quiet(.init(deadLetters: RefusingDlqHandler())))
        try broker.addTrigger(
            Trigger(name: "doomed", sink: FlakySink(failures: .max), delivery: DeliveryPolicy(retries: 0)))
        try broker.addTrigger(Trigger(name: "fine", sink: CollectorSink()))
        let event = Self.event("events.x.y")
        let result = await broker.route(event)
        #expect(result.delivered == 1 && result.failed == 1 && result.deadLettered == 0)
        #expect(!result.isComplete)
        #expect(result.failures.count == 1 && result.failures[0].contains("dead-letter store unavailable"))
        #expect(broker.metrics(forTrigger: "doomed")?.failed == 1)
    }

    @Test("Replies are routed with a hop count; a reply loop stops at the hop limit and is dead-lettered")
    func repliesAndLoopGuard() async throws {
        let letters = MemoryDlqHandler()
        let broker = Broker(configuration: Self.quiet(.init(deadLetters: letters)))
        let answers = CollectorSink()
        try broker.addTrigger(
            Trigger(
                name: "ask", filter: TriggerFilter(subjectPattern: "events.questions.>"),
                sink: InProcessSink { question in
                    Event(
                        subject: "events.answers.\(question.subject.split(separator: ".").last!)", category: "answers",
                        payload: ["to": .string(question.id)])
                })
        )
        try broker.addTrigger(
            Trigger(name: "answers", filter: TriggerFilter(subjectPattern: "events.answers.>"), sink: answers))
        let result = await broker.route(Self.event("events.questions.q1"))
        #expect(result.delivered == 1 && result.replies == 1)
        let answer = try #require(answers.events.first)
        #expect(answer.subject == "events.answers.q1")
        #expect(Broker.hops(of: answer) == 1)

        // A sink that answers every ping with another ping.
        let pings = CollectorSink()
        try broker.addTrigger(
            Trigger(
                name: "pong", filter: TriggerFilter(subjectPattern: "events.ping.>"),
                sink: InProcessSink { ping in
                    _ = try await pings.deliver(ping)
                    return Event(subject: ping.subject, category: "ping", payload: nil, metadata: ping.metadata)
                }))
        let loop = await broker.route(Self.event("events.ping.x"))
        #expect(pings.events.count == 16, "hops 0 through 15 are routed")
        #expect(pings.events.map(Broker.hops(of:)) == Array(0..<16))
        #expect(loop.isComplete)
        let letter = try #require(try await letters.list(limit: 10).first)
        #expect(letter.reason.contains("hop limit 16"))
        #expect(Broker.hops(of: letter.event) == 16)
    }

    @Test("Inline mode: the broker reads the pipeline with an in-memory position; replies go back through it")
    func inlineThroughPipeline() async throws {
        let provider = MemoryProvider()
        var configuration = Self.quiet()
        configuration.publishReply = { reply in _ = try await provider.publish(reply) }
        configuration.deadLetters = provider.deadLetters
        let broker = Broker(configuration: configuration)
        let bus = EventBus(pipeline: provider)
        let audit = CollectorSink()
        try broker.addTrigger(
            Trigger(
                name: "audit", filter: TriggerFilter(subjectPattern: "events.orders.>"),
                sink: try TopicSink(provider: provider, subject: "events.audit.orders"))
        )
        try broker.addTrigger(
            Trigger(name: "audit-log", filter: TriggerFilter(subjectPattern: "events.audit.>"), sink: audit))
        try broker.addTrigger(
            Trigger(
                name: "receipt", filter: TriggerFilter(eventType: "order.paid"),
                sink: InProcessSink { paid in
                    Event(subject: "events.receipts.sent", category: "receipts", payload: ["for": .string(paid.id)])
                })
        )
        try broker.addTrigger(
            Trigger(
                name: "broken", filter: TriggerFilter(eventType: "order.broken"), sink: FlakySink(failures: .max),
                delivery: DeliveryPolicy(retries: 0)))
        var source = Broker.Source.inline(provider)
        source.options.deliverPolicy = .all  // started after the publishes below
        let run = Task { try await broker.run(source) }

        let paid = try await bus.publish(
            category: "orders", topic: "paid", eventType: "order.paid", version: 1, summary: "paid", source: "shop",
            payload: ["id": 7])
        try await bus.publish(
            category: "orders", topic: "broken", eventType: "order.broken", version: 1, summary: "broken",
            source: "shop", payload: [:])

        // Generous: at the start of a full parallel run the process is starved for seconds.
        #expect(
            await eventually(within: .seconds(30)) {
                let stored = (try? await provider.history(filter: "events.>", limit: 100)) ?? []
                let letters = (try? await provider.deadLetters.count()) ?? 0
                return stored.contains { $0.subject == "events.receipts.sent" && $0.payload["for"] == .string(paid.id) }
                    && stored.filter { $0.subject == "events.audit.orders" }.count == 2
                    && audit.events.count == 2
                    && letters == 2
            }, "the reply, both audit copies (routed again from the stream) and the dead letters")
        run.cancel()
        _ = try? await run.value
        let stored = try await provider.history(filter: "events.>", limit: 100)
        #expect(
            stored.filter { $0.subject == "events.audit.orders" }.map { $0.metadata["courier_original_id"] }.contains(
                paid.id))
        #expect(
            !stored.contains { $0.metadata[DeadLetterEvent.MetadataKey.reason] != nil }, "no dead letter in the stream")
        // The broken order, and its audit copy (the broker reads the stream, so it routes what the
        // topic sink published too): each dead-lettered once by the trigger that failed.
        let dlq = try await provider.deadLetters.list(limit: 10)
        #expect(dlq.count == 2)
        #expect(dlq.allSatisfy { $0.consumer == "broken" })
        #expect(Set(dlq.map(\.originalSubject)) == ["events.orders.broken", "events.audit.orders"])
    }
}
#endif
