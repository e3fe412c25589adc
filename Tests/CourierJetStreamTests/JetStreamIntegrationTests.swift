#if NATS
import CourierCore
import CourierJetStream
import CourierTesting
import Foundation
import Synchronization
import Testing

/// Integration tests against real nats-server processes. Tests that stop, kill or reconfigure a
/// server start their own.
@Suite("JetStreamProvider against a real nats-server")
struct JetStreamIntegrationTests {
    static func configuration(_ url: String, stream: String = "EVENTS") -> JetStreamProvider.Configuration {
        var configuration = JetStreamProvider.Configuration(url: url)
        configuration.stream = stream
        configuration.reconnect = .init(maxAttempts: nil, wait: .milliseconds(100))
        configuration.connectTimeout = .seconds(2)
        configuration.requestTimeout = .seconds(2)
        return configuration
    }

    static func event(_ i: Int, category: String = "orders", topic: String = "created") -> Event {
        Event(subject: "events.\(category).\(topic)", category: category, payload: ["i": .int(Int64(i))], source: "it")
    }

    @Test("SIGKILL and restart mid-stream: every event delivered, processed once, stored once")
    func killAndRestartMidStream() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(Self.configuration(server.url, stream: "CRASH"))
        let total = 1500
        let subscription = try await provider.subscribeDurable(
            consumer: "crash-worker",
            filter: "events.>",
            options: SubscribeOptions(maxDeliver: 100, ackWait: .seconds(2))
        )
        let published = Atomic<Int>(0)
        let publisher = Task {
            var ids: [String] = []
            for i in 0..<total {
                let event = Self.event(i)
                _ = try await provider.publish(event, options: PublishOptions(timeout: .seconds(60)))
                ids.append(event.id)
                published.add(1, ordering: .relaxed)
            }
            return ids
        }
        let consumer = Task {
            var processed: [String: Int] = [:]  // id -> times processed as new
            var redeliveries = 0
            let deadline = ContinuousClock.now + .seconds(120)
            while processed.count < total, ContinuousClock.now < deadline {
                guard let pending = try await subscription.next(timeout: .seconds(1)) else { continue }
                if processed[pending.event.id] == nil {
                    processed[pending.event.id] = 1
                } else {
                    redeliveries += 1  // an ack lost in the crash window: acknowledge it again, do not reprocess
                }
                try await pending.ack()
            }
            return (processed, redeliveries)
        }
        #expect(await eventually(within: .seconds(60)) { published.load(ordering: .relaxed) >= total / 3 })
        server.kill()
        try await Task.sleep(for: .milliseconds(300))  // the outage itself is under test
        try await server.restart()
        let ids = try await publisher.value
        let (processed, redeliveries) = try await consumer.value
        #expect(ids.count == total)
        #expect(Set(ids).count == total)
        #expect(Set(ids).subtracting(processed.keys).isEmpty, "every published event was delivered")
        #expect(processed.count == total)
        #expect(processed.values.allSatisfy { $0 == 1 }, "each event was processed (first ack) exactly once")
        let info = try await provider.info()
        #expect(info.messages == UInt64(total), "the stream holds no duplicates")
        #expect(await eventually(within: .seconds(5)) { provider.connectionEvents.reconnects >= 1 })
        // Acks lost in the crash window come back once more: they must be known events, and after
        // acknowledging them nothing is left.
        var lateRedeliveries = 0
        while lateRedeliveries < 2_000, let late = try await subscription.next(timeout: .seconds(3)) {
            #expect(processed[late.event.id] != nil, "a redelivery is of an event already processed")
            try await late.ack()
            lateRedeliveries += 1
        }
        Logger.note(
            "kill/restart: \(redeliveries + lateRedeliveries) redeliveries after lost acks, \(info.details["publishRetries"] ?? "?") publish retries"
        )
        await subscription.close()
        await provider.shutdown()
    }

    @Test("the same event published before and after a reconnect is stored once")
    func dedupeAcrossReconnect() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(Self.configuration(server.url, stream: "DEDUPE"))
        let event = Self.event(1)
        let first = try await provider.publish(event)
        server.stop()
        try await server.restart()
        #expect(await eventually(within: .seconds(10)) { await provider.health() })
        let again = try await provider.publish(event)
        #expect(again.duplicate)
        #expect(again.sequence == first.sequence)
        #expect(try await provider.info().messages == 1)
        await provider.shutdown()
    }

    @Test("a publish during a short outage completes after the reconnect; past its timeout it fails retryably")
    func publishDuringOutage() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(Self.configuration(server.url, stream: "OUTAGE"))
        server.stop()
        let survivor = Self.event(1)
        let pending = Task { try await provider.publish(survivor, options: PublishOptions(timeout: .seconds(30))) }
        let doomed = await #expect(throws: CourierError.self) {
            try await provider.publish(Self.event(2), options: PublishOptions(timeout: .milliseconds(500)))
        }
        #expect(doomed?.isRetryable == true)
        try await server.restart()
        let ack = try await pending.value
        #expect(ack.sequence >= 1)
        let stored = try await provider.history(filter: nil, limit: 10)
        #expect(stored.contains(survivor))
        await provider.shutdown()
    }

    @Test("a pipelined batch stores every event once; sending it again only finds duplicates")
    func pipelinedBatch() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        var configuration = Self.configuration(server.url, stream: "BATCH")
        configuration.publishWindow = 256
        let provider = try await JetStreamProvider.connect(configuration)
        let events = (0..<5000).map { Self.event($0) }
        let first = await provider.publishBatch(events)
        let sequences = try first.map { try $0.get().sequence }
        #expect(Set(sequences).count == events.count)
        #expect(sequences == sequences.sorted(), "one publisher's events keep their order")
        let second = await provider.publishBatch(events)
        #expect(try second.allSatisfy { try $0.get().duplicate })
        #expect(try await provider.info().messages == UInt64(events.count))
        await provider.shutdown()
    }

    @Test("the pipelined publisher reads each kind of acknowledgement: stored, duplicate, refused, no stream")
    func acknowledgementKinds() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(Self.configuration(server.url, stream: "ACKS"))
        let body = Array(#"{"raw":true}"#.utf8)
        let results = try await provider.publish(
            messages: [
                OutgoingMessage(subject: "events.acks.a", payload: body, messageID: "ack-1"),
                OutgoingMessage(subject: "events.acks.a", payload: body, messageID: "ack-1"),
                OutgoingMessage(subject: "events.acks.b", payload: body, messageID: "ack-2", expectedLastSequence: 99),
                OutgoingMessage(subject: "events.acks.c", payload: body, messageID: "ack-3", expectedLastSequence: 1),
            ],
            timeout: .seconds(5))
        let stored = try results[0].get()
        #expect(stored.sequence == 1 && stored.stream == "ACKS" && !stored.duplicate)
        let duplicate = try results[1].get()
        #expect(duplicate.sequence == 1 && duplicate.duplicate)
        #expect(throws: CourierError.self) { try results[2].get() }
        if case .failure(let refused) = results[2] {
            #expect(refused.code == .wrongLastSequence, "\(refused)")
            #expect(refused.input == "events.acks.b")
            #expect(!refused.isRetryable)
        }
        #expect(try results[3].get().sequence == 2)

        // No stream stores the subject: the server has no responder, which is retryable until
        // the call's timeout passes.
        let started = ContinuousClock.now
        let orphan = try await provider.publish(
            messages: [OutgoingMessage(subject: "elsewhere.x", payload: body, messageID: "ack-4")],
            timeout: .seconds(1))
        #expect(ContinuousClock.now - started < .seconds(10))
        if case .failure(let error) = orphan[0] {
            #expect(error.isRetryable, "\(error)")
            #expect(error.input == "elsewhere.x")
        } else {
            Issue.record("a publish no stream stores succeeded: \(orphan[0])")
        }
        #expect(try await provider.info().messages == 2)
        await provider.shutdown()
    }

    @Test("shutdown waits for in-flight publishes")
    func shutdownDrains() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(Self.configuration(server.url, stream: "DRAIN"))
        let events = (0..<3000).map { Self.event($0) }
        let batch = Task { await provider.publishBatch(events) }
        #expect(
            await eventually(within: .seconds(30), every: .milliseconds(1)) {
                (try? await provider.info().messages) ?? 0 > 0
            })
        await provider.shutdown(drainTimeout: .seconds(20))
        let results = await batch.value
        #expect(results.allSatisfy { if case .success = $0 { true } else { false } })
        let check = try await JetStreamProvider.connect(Self.configuration(server.url, stream: "DRAIN"))
        #expect(try await check.info().messages == UInt64(events.count))
        await check.shutdown()
    }

    @Test("a message that is not an event is dead-lettered with its raw bytes and terminated")
    func undecodableMessage() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(Self.configuration(server.url, stream: "POISON"))
        let dlq = CountingDlqHandler()
        let subscription = try await provider.subscribeDurable(
            consumer: "poison",
            filter: "events.raw.>",
            options: SubscribeOptions(ackWait: .seconds(2), deadLetterHandler: dlq)
        )
        let raw = Array("this is not an event {".utf8)
        let results = try await provider.publish(messages: [
            OutgoingMessage(subject: "events.raw.bytes", payload: raw, messageID: "raw-1")
        ])
        #expect(throws: Never.self) { try results[0].get() }
        let good = Event(subject: "events.raw.good", category: "raw", payload: ["ok": true])
        try await provider.publish(good)
        let delivered = try #require(await subscription.next(timeout: .seconds(10)))
        #expect(delivered.event == good, "the bad message is never handed to the consumer")
        try await delivered.ack()
        #expect(await eventually(within: .seconds(10)) { dlq.letters().count == 1 })
        let letter = try #require(dlq.letters().first)
        #expect(letter.rawPayload == raw)
        #expect(letter.reason.contains("undecodable"))
        #expect(letter.originalSubject == "events.raw.bytes")
        #expect(letter.event.id == "raw-1")
        // Terminated, not redelivered: the handler is never called again. (A redelivery of the
        // good event, had its ack come after a long stall, would not count against this.)
        let quietUntil = ContinuousClock.now + .milliseconds(3500)
        while ContinuousClock.now < quietUntil {
            if let late = try await subscription.next(timeout: quietUntil - ContinuousClock.now) {
                #expect(late.event == good)
                try await late.ack()
            }
        }
        #expect(dlq.handled.load(ordering: .relaxed) == 1, "the poison message was dead-lettered once")
        await subscription.close()
        await provider.shutdown()
    }

    /// Deliveries that reached a closing subscription are handed back at once; those the server
    /// pushed while it was noticing the subscription was gone come back after the ack wait.
    @Test("closing subscriptions while messages are in flight never crashes and loses nothing")
    func subscriptionChurn() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(Self.configuration(server.url, stream: "CHURN"))
        var publishedIDs: Set<String> = []
        var acked: Set<String> = []
        for round in 0..<25 {
            let subscription = try await provider.subscribeDurable(
                consumer: "churn", filter: "events.>", options: SubscribeOptions(maxDeliver: 100, ackWait: .seconds(2)))
            let events = (0..<40).map { Self.event(round * 100 + $0) }
            publishedIDs.formUnion(events.map(\.id))
            let batch = Task { await provider.publishBatch(events) }
            if let first = try await subscription.next(timeout: .seconds(5)) {
                try await first.ack()
                acked.insert(first.event.id)
            }
            await subscription.close()  // deliveries are still arriving
            _ = await batch.value
        }
        let final = try await provider.subscribeDurable(
            consumer: "churn", filter: "events.>", options: SubscribeOptions(maxDeliver: 100, ackWait: .seconds(2)))
        while acked.count < publishedIDs.count, let pending = try await final.next(timeout: .seconds(6)) {
            acked.insert(pending.event.id)
            try await pending.ack()
        }
        #expect(acked.count == publishedIDs.count)
        #expect(publishedIDs.subtracting(acked).isEmpty)
        await final.close()
        await provider.shutdown()
    }

    @Test("history finds the newest matching events among others, oldest first")
    func historyAmongOthers() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(Self.configuration(server.url, stream: "HISTORY"))
        var payments: [Event] = []
        var all: [Event] = []
        for i in 0..<400 {
            let event = Self.event(i, category: i % 3 == 0 ? "payments" : "orders")
            all.append(event)
            if i % 3 == 0 { payments.append(event) }
        }
        _ = await provider.publishBatch(all)
        #expect(
            try await provider.history(filter: "events.payments.>", limit: 50).map(\.id)
                == payments.suffix(50).map(\.id))
        #expect(try await provider.history(filter: "events.payments.>", limit: 1000).map(\.id) == payments.map(\.id))
        #expect(try await provider.history(filter: nil, limit: 7).map(\.id) == all.suffix(7).map(\.id))
        #expect(try await provider.history(filter: "events.none.>", limit: 7).isEmpty)
        await provider.shutdown()
    }
}

/// Test notes that should show in the log.
enum Logger {
    static func note(_ text: String) { print("note: \(text)") }
}
/// Counts every hand-off, including repeats the memory handler would collapse.
final class CountingDlqHandler: DlqHandler {
    let handled = Atomic<Int>(0)
    private let base = MemoryDlqHandler()

    func handle(_ letter: DeadLetterEvent) async throws {
        handled.add(1, ordering: .relaxed)
        try await base.handle(letter)
    }

    func list(limit: Int) async throws -> [DeadLetterEvent] { try await base.list(limit: limit) }
    func count() async throws -> Int { try await base.count() }
    func letters() -> [DeadLetterEvent] { base.letters() }
}
#endif
