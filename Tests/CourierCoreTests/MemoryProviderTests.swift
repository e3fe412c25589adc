import CourierCore
import CourierTesting
import Synchronization
import Testing

@Suite("MemoryProvider specifics")
struct MemoryProviderTests {
    func provider(_ configure: (inout MemoryProvider.Configuration) -> Void = { _ in }) -> MemoryProvider {
        var configuration = MemoryProvider.Configuration()
        configure(&configuration)
        return MemoryProvider(configuration: configuration)
    }

    @Test("retention drops the oldest events first by count")
    func maxEvents() async throws {
        let memory = provider { $0.maxEvents = 5 }
        var events: [Event] = []
        for i in 0..<12 {
            let event = try Event(category: "a", topic: "b", payload: ["i": .int(Int64(i))])
            try await memory.publish(event)
            events.append(event)
        }
        #expect(try await memory.history(filter: nil, limit: 100) == Array(events.suffix(5)))
        let info = try await memory.info()
        #expect(info.messages == 5)
        #expect(info.firstSequence == 8)
        #expect(info.lastSequence == 12)
    }

    @Test("a publish refused for its expected last sequence leaves its message id free, and a duplicate keeps it taken")
    func refusedPublishIsNotRemembered() async throws {
        let memory = provider()
        let first = try await memory.publish(try Event(category: "a", topic: "b"))
        let event = try Event(category: "a", topic: "b")
        let error = await #expect(throws: CourierError.self) {
            try await memory.publish(event, options: PublishOptions(messageID: "m1", expectedLastSequence: 99))
        }
        #expect(error?.code == .wrongLastSequence)
        // The refused id was not stored, so this is no duplicate.
        let stored = try await memory.publish(event, options: PublishOptions(messageID: "m1"))
        #expect(!stored.duplicate)
        #expect(stored.sequence == first.sequence + 1)
        // A duplicate answers with the stored sequence and leaves the id remembered.
        for _ in 0..<2 {
            let again = try await memory.publish(event, options: PublishOptions(messageID: "m1"))
            #expect(again.duplicate)
            #expect(again.sequence == stored.sequence)
        }
        #expect(try await memory.info().messages == 2)
    }

    @Test("retention drops the oldest events first by bytes")
    func maxBytes() async throws {
        let memory = provider { $0.maxBytes = 2000 }
        for _ in 0..<50 {
            try await memory.publish(
                try Event(category: "a", topic: "b", payload: ["pad": .string(String(repeating: "x", count: 100))]))
        }
        let info = try await memory.info()
        #expect(info.bytes <= 2000)
        #expect(info.messages > 0 && info.messages < 50)
    }

    @Test("events a slow consumer never read before retention dropped them are counted, not lost silently")
    func missedEventsAreCounted() async throws {
        let memory = provider { $0.maxEvents = 10 }
        let slow = try await memory.subscribeDurable(consumer: "slow", filter: "events.>")
        for _ in 0..<25 { try await memory.publish(try Event(category: "a", topic: "b")) }
        // The consumer reads the 10 retained events; the 15 dropped ones are counted as missed.
        let received = try await slow.collect(10, within: .seconds(5))
        #expect(received.count == 10)
        for pending in received { try await pending.ack() }
        #expect(try await slow.next(timeout: .milliseconds(200)) == nil)
        #expect(try memory.consumerInfo("slow")["missed"] == 15)
        #expect(try await memory.info().details["eventsMissed"] == "15")
        await slow.close()
    }

    @Test("deliveries a subscription fetched but never handed out return uncounted when it closes")
    func fetchedDeliveriesReturnOnClose() async throws {
        let memory = provider()
        let handler = MemoryDlqHandler()
        let options = SubscribeOptions(maxDeliver: 1, deadLetterHandler: handler)
        var events: [Event] = []
        for i in 0..<10 {
            let event = try Event(category: "a", topic: "b", payload: ["i": .int(Int64(i))])
            try await memory.publish(event)
            events.append(event)
        }
        let first = try await memory.subscribeDurable(consumer: "fetch", filter: "events.>", options: options)
        let one = try #require(try await first.next(timeout: .seconds(5)))
        try await one.ack()
        await first.close()
        #expect(try memory.consumerInfo("fetch")["delivered"] == 1, "only the handed-out delivery counts")

        // With maxDeliver 1 a fetched event counted as delivered would now be dead-lettered, and
        // one kept by the closed subscription would wait out the 30 s ack wait.
        let second = try await memory.subscribeDurable(consumer: "fetch", filter: "events.>", options: options)
        let rest = try await second.collect(9, within: .seconds(5))
        #expect(rest.map(\.event) == Array(events.dropFirst()))
        #expect(rest.allSatisfy { $0.deliveryCount == 1 })
        for pending in rest { try await pending.ack() }
        #expect(try await handler.count() == 0)
        await second.close()
    }

    @Test("fetched deliveries are not handed out once the consumer is deleted or the provider shut down")
    func fetchedDeliveriesEndWithTheConsumer() async throws {
        for ending in ["unsubscribe", "shutdown"] {
            let memory = provider()
            for _ in 0..<5 { try await memory.publish(try Event(category: "a", topic: "b")) }
            let subscription = try await memory.subscribeDurable(consumer: "ends", filter: "events.>")
            _ = try #require(try await subscription.next(timeout: .seconds(5)))
            if ending == "unsubscribe" {
                try await memory.unsubscribe(consumer: "ends")
            } else {
                await memory.shutdown()
            }
            // The subscription fetched the other four with the first one.
            #expect(try await subscription.next(timeout: .seconds(1)) == nil, "\(ending)")
            await subscription.close()
        }
    }

    @Test("publishers never wait for a subscriber that does not read")
    func publishersNeverBlock() async throws {
        let memory = provider { $0.maxEvents = 100 }
        let idle = try await memory.subscribe("events.>")
        for _ in 0..<10_000 { try memory.publishNow(try Event(category: "a", topic: "b")) }
        #expect(try await memory.info().lastSequence == 10_000)
        await idle.close()
    }

    @Test("the dedupe window forgets old ids")
    func dedupeWindow() async throws {
        let memory = provider { $0.duplicateWindow = .milliseconds(50) }
        let event = try Event(category: "a", topic: "b")
        let first = try await memory.publish(event)
        #expect(try await memory.publish(event).duplicate)
        try await Task.sleep(for: .milliseconds(80))  // the window itself is what is under test
        let later = try await memory.publish(event)
        #expect(!later.duplicate)
        #expect(later.sequence > first.sequence)
    }

    @Test("events outside the prefix are rejected")
    func outsidePrefix() async throws {
        let memory = provider()
        var event = try Event(category: "a", topic: "b")
        event.subject = "other.a.b"
        let error = await #expect(throws: CourierError.self) { try await memory.publish(event) }
        #expect(error?.code == .invalidSubject)
    }

    @Test("shutdown ends subscriptions and rejects publishes")
    func shutdown() async throws {
        let memory = provider()
        let subscription = try await memory.subscribeDurable(consumer: "c", filter: "events.>")
        async let ended = subscription.next()
        await memory.shutdown()
        #expect(try await ended == nil)
        let error = await #expect(throws: CourierError.self) {
            try await memory.publish(try Event(category: "a", topic: "b"))
        }
        #expect(error?.code == .shutdown)
        #expect(await !memory.health())
    }

    @Test("a cancelled waiting subscriber returns nil promptly")
    func cancellation() async throws {
        let memory = provider()
        let subscription = try await memory.subscribeDurable(consumer: "c", filter: "events.>")
        let task = Task { try await subscription.next() }
        task.cancel()
        #expect(try await task.value == nil)
    }

    @Test("an existing durable consumer cannot be rebound to another filter")
    func filterMismatch() async throws {
        let memory = provider()
        _ = try await memory.subscribeDurable(consumer: "c", filter: "events.a.>")
        let error = await #expect(throws: CourierError.self) {
            _ = try await memory.subscribeDurable(consumer: "c", filter: "events.b.>")
        }
        #expect(error?.code == .invalidConfiguration)
    }

    @Test("a failing dead-letter handler keeps the event and retries the hand-off")
    func failingDeadLetterHandler() async throws {
        final class Flaky: DlqHandler, @unchecked Sendable {
            let inner = MemoryDlqHandler()
            let failures = Mutex(1)
            func handle(_ letter: DeadLetterEvent) async throws {
                let fail = failures.withLock { count -> Bool in
                    defer { count -= 1 }
                    return count > 0
                }
                if fail { throw CourierError(.deliveryFailed, "dlq down") }
                try await inner.handle(letter)
            }
            func list(limit: Int) async throws -> [DeadLetterEvent] { try await inner.list(limit: limit) }
            func count() async throws -> Int { try await inner.count() }
        }
        let flaky = Flaky()
        let memory = provider()
        let subscription = try await memory.subscribeDurable(
            consumer: "c",
            filter: "events.>",
            options: SubscribeOptions(maxDeliver: 1, ackWait: .milliseconds(300), deadLetterHandler: flaky)
        )
        try await memory.publish(try Event(category: "a", topic: "b"))
        try await #require(await subscription.next(timeout: .seconds(5))).nak()
        #expect(flaky.inner.letters().isEmpty)
        // The consumer retries the hand-off (after 1 s) while it is being pulled, and hands
        // nothing out meanwhile. Pulled until the letter arrives, at most 20 s: a loaded machine
        // (the whole suite runs at once on two cores) can delay the retry past any one short
        // wait.
        let deadline = ContinuousClock.now + .seconds(20)
        while flaky.inner.letters().isEmpty, ContinuousClock.now < deadline {
            #expect(try await subscription.next(timeout: .milliseconds(500)) == nil)
        }
        #expect(flaky.inner.letters().count == 1)
        #expect(try await memory.info().details["deadLetterFailures"] == "1")
        await subscription.close()
    }

    @Test(
        "invalid subscribe options are rejected by name",
        arguments: [
            SubscribeOptions(maxDeliver: 0), SubscribeOptions(maxAckPending: 0), SubscribeOptions(ackWait: .zero),
            SubscribeOptions(maxDeliver: 1, backoff: [.seconds(1), .seconds(2)]), SubscribeOptions(backoff: [.zero]),
        ])
    func invalidOptions(_ options: SubscribeOptions) async throws {
        let error = await #expect(throws: CourierError.self) {
            _ = try await provider().subscribeDurable(consumer: "c", filter: "events.>", options: options)
        }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.input != nil)
    }
}
