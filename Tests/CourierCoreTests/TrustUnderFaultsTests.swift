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

    // MARK: Item 12: backpressure outcomes

    @Test(".sample tells the producer when its own event was dropped")
    func sampleReportsDrops() async throws {
        let adapter = GateAdapter()
        let bus = try IngestBus(
            configuration: .init(
                shards: 1, ringCapacity: 2, batch: .init(maxEvents: 1, maxDelay: .zero),
                backpressure: .sample(rate: 0.5), adapter: adapter, logger: Logger(label: "test")))
        // The worker takes the first event and blocks in the adapter; the ring then fills.
        try bus.ingestRaw(RawEvent(subject: "events.s.one", bytes: Array("0".utf8)))
        #expect(await eventually(within: .seconds(5)) { adapter.received.count == 1 })
        var accepted: [String] = ["0"]
        for i in 1..<40 {
            do {
                try bus.ingestRaw(RawEvent(subject: "events.s.one", bytes: Array("\(i)".utf8)))
                accepted.append("\(i)")
            } catch let error as CourierError where error.code == .backpressure {
                continue  // dropped, and the producer knows
            }
        }
        adapter.open()
        _ = await bus.shutdown(deadline: .seconds(10))
        let delivered = adapter.received
        // Sampling evicts the oldest waiting events to keep some new ones: what reaches the
        // adapter last are the newest events whose ingest reported success.
        #expect(delivered.suffix(2) == Array(accepted.suffix(2)), "delivered \(delivered), accepted \(accepted)")
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

    // MARK: Item 6: bad ingest events

    @Test("ingestRaw refuses an invalid subject with a typed error")
    func ingestValidatesSubjects() async throws {
        let adapter = GateAdapter()
        adapter.open()
        let bus = try IngestBus(configuration: .init(shards: 1, adapter: adapter, logger: Logger(label: "test")))
        for bad in [
            "events.bad subject", "", "events..x", "events.*.x", "events." + String(repeating: "y", count: 5000),
        ] {
            let error = #expect(throws: CourierError.self) { try bus.ingestRaw(RawEvent(subject: bad, bytes: [])) }
            #expect(error?.code == .invalidSubject)
        }
        let stats = await bus.shutdown()
        #expect(stats.eventsIngested == 0 && stats.eventsRejected == 5, "\(stats)")
    }

    @Test("one oversized event is dead-lettered; the rest of its batch is stored and counted")
    func oversizedEventIsolated() async throws {
        var memory = MemoryProvider.Configuration()
        memory.maxPayloadBytes = 2000
        let provider = MemoryProvider(configuration: memory)
        let bus = try IngestBus(
            configuration: .init(
                shards: 1, batch: .init(maxEvents: 16, maxDelay: .milliseconds(200)),
                adapter: ProviderAdapter(provider: provider), logger: Logger(label: "test")))
        for i in 0..<10 {
            let size = i == 4 ? 5000 : 10
            try bus.ingest(
                Event(
                    subject: "events.ingest.s", category: "ingest",
                    payload: ["i": .int(Int64(i)), "pad": .string(String(repeating: "p", count: size))]))
        }
        let stats = await bus.shutdown()
        #expect(try await provider.info().messages == 9, "every other event of the batch is stored")
        #expect(stats.eventsDispatched == 9, "\(stats)")
        #expect(
            try await provider.history(filter: nil, limit: 20).compactMap { $0.payload["i"]?.intValue }
                == [0, 1, 2, 3, 5, 6, 7, 8, 9])
    }
}

/// A state store whose first save takes long, so a later save can overtake it.
final class SlowFirstSaveStore: StateStore {
    private let state = Mutex<(calls: Int, stored: [SubscriptionFilter])>((0, []))

    var saveCalls: Int { state.withLock { $0.calls } }

    func save(_ subscriptions: [SubscriptionFilter]) async throws {
        let call = state.withLock { state -> Int in
            state.calls += 1
            return state.calls
        }
        if call == 1 { try await Task.sleep(for: .milliseconds(400)) }
        state.withLock { $0.stored = subscriptions }
    }

    func load() async throws -> [SubscriptionFilter] { state.withLock { $0.stored } }
}

/// An adapter that holds every batch until ``open()`` and records the payloads it took.
final class GateAdapter: Adapter {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>], received: [String])>(
        (false, [], []))

    var name: String { "gate" }

    func open() {
        let waiters = state.withLock { state in
            state.open = true
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    var received: [String] { state.withLock { $0.received } }

    func onBatch(_ batch: Batch) async throws -> BatchResult {
        state.withLock { $0.received += batch.events.map { String(decoding: $0.bytes, as: UTF8.self) } }
        await withCheckedContinuation { continuation in
            let go = state.withLock { state -> Bool in
                if state.open { return true }
                state.waiters.append(continuation)
                return false
            }
            if go { continuation.resume() }
        }
        return .stored
    }

    func pollShard(shard: Int, cursor: UInt64, limit: Int) async throws -> ShardPollResult {
        ShardPollResult(events: [], cursor: cursor, hasMore: false)
    }

    func flush() async throws {}
    func shutdown() async {}
    var needsTimeoutGuard: Bool { false }
}
