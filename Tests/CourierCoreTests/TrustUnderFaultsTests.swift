import CourierCore
import CourierTesting
import Foundation
import Logging
import Synchronization
import Testing

/// Defects that lost, stalled or misreported events in the core (issue "Trust under faults").
/// Each test failed before its fix.
@Suite("Trust under faults: core")
struct TrustUnderFaultsTests {
    // MARK: Item 3: subject length

    @Test("an over-long subject is refused before sending, named by its prefix and length")
    func overlongSubject() throws {
        let topic = String(repeating: "x", count: 6000)
        let error = #expect(throws: CourierError.self) { try Subjects.build(category: "orders", topic: topic) }
        #expect(error?.code == .invalidSubject)
        let message = error?.message ?? ""
        #expect(message.count < 300, "the message does not repeat the whole input: \(message.count) characters")
        #expect(message.contains("6000"), "it names the length: \(message)")
        #expect(message.contains("xxxxxxxx"), "it names the input by a prefix: \(message)")
        #expect((error?.input?.count ?? 0) < 100)

        let filter = #expect(throws: CourierError.self) { try SubjectFilter("events." + topic + ".>") }
        #expect(filter?.code == .invalidFilter)
        #expect((filter?.message.count ?? 0) < 300)

        let provider = MemoryProvider()
        let published = #expect(throws: CourierError.self) {
            try provider.publishNow(Event(subject: "events.orders." + topic, category: "orders"))
        }
        #expect(published?.code == .invalidSubject)
    }

    // MARK: Item 4: lost wake-ups

    @Test("a for-await consumer sees every event without a later publish")
    func noLostWakeUp() async throws {
        let provider = MemoryProvider()
        let subscription = try await provider.subscribeDurable(consumer: "w", filter: "events.>")
        let received = Atomic<Int>(0)
        let rounds = 3000
        let consumer = Task {
            for try await _ in subscription {
                if received.add(1, ordering: .releasing).newValue == rounds { break }
            }
        }
        for round in 1...rounds {
            try provider.publishNow(Event(subject: "events.orders.created", category: "orders"))
            // Each publish waits until the consumer took the previous event, so every publish
            // races the consumer going back to sleep; a lost wake-up stalls it here for good.
            let deadline = ContinuousClock.now + .seconds(5)
            while received.load(ordering: .acquiring) < round, ContinuousClock.now < deadline { await Task.yield() }
            try #require(received.load(ordering: .acquiring) == round, "event \(round) was never delivered")
        }
        try await consumer.value
        await subscription.close()
    }

    @Test("a dead-letter retry requeued from the ack path wakes a waiting subscriber")
    func deadLetterRetryWakesSubscriber() async throws {
        let dlq = FlakyDlqHandler(failures: 1, delay: .milliseconds(300))
        let provider = MemoryProvider()
        let subscription = try await provider.subscribeDurable(
            consumer: "poison", filter: "events.>",
            options: SubscribeOptions(maxDeliver: 1, ackWait: .seconds(30), deadLetterHandler: dlq))
        try provider.publishNow(Event(subject: "events.orders.created", category: "orders"))
        let pending = try #require(await subscription.next(timeout: .seconds(5)))
        // The decision is made by another task; once its dead-letter hand-off is under way, a
        // reader waits for more (with nothing pending, so without a deadline). The hand-off fails
        // and is requeued: only a wake-up gets the reader to retry it before its 8 s timeout.
        let decision = Task { try await pending.nak() }
        #expect(await eventually(within: .seconds(5)) { dlq.started >= 1 })
        let next = Task { try await subscription.next(timeout: .seconds(8)) }
        try await decision.value
        #expect(await eventually(within: .seconds(6)) { dlq.stored.count == 1 }, "the requeued hand-off ran")
        next.cancel()
        _ = try? await next.value
        await subscription.close()
    }

    // MARK: Item 8: subscriber registry

    @Test("concurrent updateSubscription calls are saved in order: the last save holds every registration")
    func orderedRegistrySaves() async throws {
        let store = SlowFirstSaveStore()
        var configuration = EventBus.Configuration()
        configuration.stateStore = store
        let bus = EventBus(pipeline: MemoryProvider(), configuration: configuration)
        let first = Task {
            try await bus.updateSubscription(SubscriptionFilter(subscriberID: "a", subjects: ["events.a.>"]))
        }
        #expect(await eventually(within: .seconds(5)) { store.saveCalls >= 1 })
        try await bus.updateSubscription(SubscriptionFilter(subscriberID: "b", subjects: ["events.b.>"]))
        try await first.value
        let saved = try await store.load().map(\.subscriberID).sorted()
        #expect(saved == ["a", "b"], "an older snapshot landed last: \(saved)")
    }

    @Test("concurrent saves to one state file each use their own temporary file")
    func concurrentFileSaves() async throws {
        let path = NSTemporaryDirectory() + "courier-state-\(UInt32.random(in: 0...UInt32.max)).json"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let store = FileStateStore(path: path)
        // Writers on threads of their own, so their writes truly overlap.
        let failures = await withTaskGroup(of: Int.self) { group in
            for writer in 0..<8 {
                group.addTask {
                    (try? await offPool { () -> Int in
                        var failed = 0
                        for round in 0..<25 {
                            let text =
                                #"[{"subscriberID":"w\#(writer)-\#(round)","subjects":["events.x.>"],"durable":true}]"#
                            do { try FileStateStore.atomicWrite(Array(text.utf8), to: path) } catch { failed += 1 }
                        }
                        return failed
                    }) ?? 25
                }
            }
            return await group.reduce(0, +)
        }
        #expect(failures == 0)
        #expect(try await store.load().count >= 1)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory())
            .filter { $0.hasPrefix((path as NSString).lastPathComponent + ".tmp") }
        #expect(leftovers.isEmpty, "temporary files left behind: \(leftovers)")
    }

    // MARK: Item 11: acknowledgements

    @Test("an ack that cannot be sent throws and leaves the delivery undecided")
    func failedAckIsVisible() async throws {
        let provider = MemoryProvider()
        let subscription = try await provider.subscribeDurable(consumer: "w", filter: "events.>")
        try provider.publishNow(Event(subject: "events.orders.created", category: "orders"))
        let pending = try #require(await subscription.next(timeout: .seconds(5)))
        await provider.shutdown()
        await #expect(throws: CourierError.self) { try await pending.ack() }
        #expect(!pending.isFinalized)
    }

    // MARK: Item 13: dedupe window

    @Test("the memory provider remembers a message id for the whole duplicate window, however many events pass")
    func dedupeByTimeNotCount() async throws {
        var configuration = MemoryProvider.Configuration()
        configuration.maxEvents = 10
        let provider = MemoryProvider(configuration: configuration)
        let event = Event(subject: "events.orders.created", category: "orders")
        let first = try provider.publishNow(event, options: PublishOptions(messageID: "order-1"))
        for _ in 0..<1100 { try provider.publishNow(Event(subject: "events.orders.other", category: "orders")) }
        let again = try provider.publishNow(event, options: PublishOptions(messageID: "order-1"))
        #expect(again.duplicate, "the id was forgotten after 1100 publishes, inside the 2 min window")
        #expect(again.sequence == first.sequence)
    }

}

/// A state store whose first save takes long, so a later save can overtake it.
final class SlowFirstSaveStore: StateStore {
    private let state = Mutex<(calls: Int, stored: [SubscriptionFilter])>((0, []))

    var saveCalls: Int { state.withLock { $0.calls } }

    /// Read, pause (the first time), write: a store that does not serialise changes itself, so
    /// overlapping changes from the bus would lose one.
    func apply(_ change: SubscriptionChange) async throws {
        let (call, snapshot) = state.withLock { state -> (Int, [SubscriptionFilter]) in
            state.calls += 1
            return (state.calls, state.stored)
        }
        if call == 1 { try await Task.sleep(for: .milliseconds(400)) }
        state.withLock { $0.stored = change.applied(to: snapshot) }
    }

    func load() async throws -> [SubscriptionFilter] { state.withLock { $0.stored } }
}
