#if NATS
import CourierCore
import CourierJetStream
import CourierTesting
import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Defects and injected faults on real nats-server processes (issue "Trust under faults").
@Suite("Trust under faults: JetStream")
struct TrustUnderFaultsJetStreamTests {
    static func configuration(_ urls: [String], stream: String) -> JetStreamProvider.Configuration {
        var configuration = JetStreamProvider.Configuration(servers: urls)
        configuration.stream = stream
        configuration.reconnect = .init(maxAttempts: nil, wait: .milliseconds(100))
        configuration.connectTimeout = .seconds(2)
        configuration.requestTimeout = .seconds(2)
        return configuration
    }

    static func event(_ i: Int, topic: String = "created") -> Event {
        Event(subject: "events.orders.\(topic)", category: "orders", payload: ["i": .int(Int64(i))], source: "trust")
    }

    /// Waits for `task` at most `bound`; `nil` when it did not finish in time.
    static func bounded<T: Sendable>(_ bound: Duration, _ task: Task<T, any Error>) async -> Result<T, any Error>? {
        await withTaskGroup(of: Result<T, any Error>?.self) { group in
            group.addTask { await task.result }
            group.addTask {
                try? await Task.sleep(for: bound)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    // MARK: Item 1: never rewrite an operator's stream

    @Test("connecting with the default configuration leaves an existing R3 stream unchanged (3-node cluster)")
    func existingR3StreamUnchanged() async throws {
        let cluster = try await NATSClusterHarness.start(nodes: 3)
        defer { cluster.stop() }
        var operatorConfiguration = Self.configuration(cluster.urls, stream: "OPS")
        operatorConfiguration.replicas = 3
        operatorConfiguration.maxAge = .seconds(3600)
        operatorConfiguration.maxEvents = 1_000_000
        operatorConfiguration.duplicateWindow = .seconds(300)
        let creator = try await cluster.placing { try await JetStreamProvider.connect(operatorConfiguration) }
        await creator.shutdown()
        let before = try await cluster.streamConfig("OPS")
        #expect(before["num_replicas"]?.intValue == 3)

        let service = try await JetStreamProvider.connect(Self.configuration(cluster.urls, stream: "OPS"))
        let after = try await cluster.streamConfig("OPS")
        for field in ["num_replicas", "max_age", "max_msgs", "max_bytes", "duplicate_window", "storage", "subjects"] {
            #expect(after[field] == before[field], "\(field) changed from \(before[field]!) to \(after[field]!)")
        }
        let ack = try await service.publish(Self.event(1))
        #expect(ack.sequence == 1)
        await service.shutdown()

        // updateLimits raises limits but never lowers replicas unless asked in so many words.
        var update = Self.configuration(cluster.urls, stream: "OPS")
        update.provisioning = .updateLimits
        update.maxAge = .seconds(7200)
        await (try await JetStreamProvider.connect(update)).shutdown()
        let updated = try await cluster.streamConfig("OPS")
        #expect(updated["num_replicas"]?.intValue == 3, "updateLimits lowered the replicas")
        #expect(updated["max_age"]?.intValue == 7_200_000_000_000)
        update.provisioning = .updateLimitsAllowingFewerReplicas
        await (try await JetStreamProvider.connect(update)).shutdown()
        #expect(
            await eventually(within: .seconds(15)) {
                (try? await cluster.streamConfig("OPS"))?["num_replicas"]?.intValue == 1
            }, "lowering the replicas was asked for")
    }

    // MARK: Item 3: subject length over the wire

    @Test("an over-long subject is refused before it reaches the server, which keeps the connection")
    func overlongSubjectOverJetStream() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(Self.configuration([server.url], stream: "LONG"))
        let long = Event(subject: "events.orders." + String(repeating: "x", count: 6000), category: "orders")
        let error = await #expect(throws: CourierError.self) { try await provider.publish(long) }
        #expect(error?.code == .invalidSubject)
        #expect((error?.message.count ?? 0) < 300)
        #expect(await provider.health())
        #expect(try await provider.publish(Self.event(1)).sequence == 1)
        #expect(provider.connectionEvents.disconnects == 0)
        await provider.shutdown()
    }

    // MARK: Item 5: shutdown

    @Test("a publish retrying during shutdown, and every call after it, ends with a shutdown error within a bound")
    func publishDuringShutdown() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(Self.configuration([server.url], stream: "SHUT"))
        server.stop()
        let retrying = Task {
            try await provider.publish(Self.event(1), options: PublishOptions(timeout: .seconds(60)))
        }
        try await Task.sleep(for: .milliseconds(500))  // it is sleeping in its retry backoff now
        await provider.shutdown(drainTimeout: .milliseconds(200))
        let outcome = try #require(await Self.bounded(.seconds(5), retrying), "the publish hung after shutdown")
        #expect(throws: CourierError.self) { try outcome.get() }
        #expect((try? outcome.get()) == nil)
        if case .failure(let error as CourierError) = outcome { #expect(error.code == .shutdown, "\(error)") }

        let after = Task { try await provider.publish(Self.event(2)) }
        let late = try #require(await Self.bounded(.seconds(2), after), "a publish after shutdown hung")
        if case .failure(let error as CourierError) = late {
            #expect(error.code == .shutdown)
        } else {
            Issue.record("a publish after shutdown did not fail: \(late)")
        }
    }

    // MARK: Item 9: dead letters stay out of ordinary subscriptions

    @Test("a dead letter never reaches an events.> subscriber")
    func deadLettersStayOutOfTheStream() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(Self.configuration([server.url], stream: "DLQLEAK"))
        let watcher = try await provider.subscribe("events.>")
        let worker = try await provider.subscribeDurable(
            consumer: "worker", filter: "events.orders.>", options: SubscribeOptions(maxDeliver: 1))
        let poison = Self.event(1)
        try await provider.publish(poison)
        let pending = try #require(await worker.next(timeout: .seconds(5)))
        try await pending.nak()  // its only delivery: dead-lettered
        #expect(await eventually(within: .seconds(10)) { (try? await provider.deadLetters.count()) == 1 })
        var seen: [String] = []
        while let delivered = try await watcher.next(timeout: .seconds(2)) {
            seen.append(delivered.event.subject)
            try await delivered.ack()
        }
        #expect(seen == [poison.subject], "the ordinary subscriber saw \(seen)")
        await watcher.close()
        await worker.close()
        await provider.shutdown()
    }

    @Test("a durable subscription whose interest the server lost subscribes again and delivers every pending event")
    func stalledSubscriptionRecovers() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(Self.configuration([server.url], stream: "STALL"))
        let subscription = try await provider.subscribeDurable(
            consumer: "stalled", filter: "events.orders.>", options: SubscribeOptions(ackWait: .seconds(2)))
        for i in 0..<5 { try await provider.publish(Self.event(i)) }
        for _ in 0..<5 {
            let pending = try #require(await subscription.next(timeout: .seconds(10)))
            try await pending.ack()
        }
        // As after a leader change on nats-server 2.9: the server no longer sees the subscription.
        provider.dropDeliveryInterest(consumer: "stalled")
        let later = (5..<20).map { Self.event($0) }
        for event in later { try await provider.publish(event) }
        var delivered: Set<String> = []
        let deadline = ContinuousClock.now + .seconds(60)
        // (An earlier event whose ack came late on a loaded machine may come back too.)
        while !Set(later.map(\.id)).isSubset(of: delivered), ContinuousClock.now < deadline {
            guard let pending = try await subscription.next(timeout: .seconds(1)) else { continue }
            delivered.insert(pending.event.id)
            try await pending.ack()
        }
        #expect(
            Set(later.map(\.id)).isSubset(of: delivered),
            "\(delivered.intersection(later.map(\.id)).count) of \(later.count) delivered after the stall")
        #expect(try await provider.info().details["subscriptionStalls"] == "1")
        await subscription.close()
        await provider.shutdown()
    }

    @Test("a stream read stalled part-way by a frozen server throws a retryable error, never a short list")
    func stalledReadIsNotShort() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.thaw()
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(Self.configuration([server.url], stream: "SHORTREAD"))
        let total = 20_000
        let events = (0..<total).map { Self.event($0) }
        for start in stride(from: 0, to: total, by: 5000) {
            let results = await provider.publishBatch(Array(events[start..<start + 5000]))
            #expect(results.allSatisfy { if case .success = $0 { true } else { false } })
        }
        let reading = Task { try await provider.readStored(from: 1, limit: total) }
        try await Task.sleep(for: .milliseconds(30))
        server.freeze()
        try await Task.sleep(for: .seconds(4))  // past the 2 s request timeout
        server.thaw()
        switch await reading.result {
        case .success(let messages):
            #expect(
                messages.count == total, "a read of \(messages.count) of \(total) messages passed for the whole stream")
            print("stalled read: the read finished before the freeze (\(messages.count) messages)")
        case .failure(let error):
            #expect((error as? CourierError)?.isRetryable == true, "\(error)")
            print("stalled read: \(error)")
        }
        await provider.shutdown()
    }

    // MARK: Item 10: bounded redelivery

    @Test("every durable consumer has a finite MaxDeliver on the server")
    func serverSideMaxDeliver() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(Self.configuration([server.url], stream: "BOUND"))
        let subscription = try await provider.subscribeDurable(consumer: "worker", filter: "events.>")
        let config = try #require(try await server.consumerConfig(stream: "BOUND", consumer: "worker"))
        let maxDeliver = try #require(config["max_deliver"]?.intValue)
        #expect(maxDeliver > 0 && maxDeliver <= 100, "server-side MaxDeliver is \(maxDeliver)")
        await subscription.close()
        await provider.shutdown()
    }

    @Test("a failing dead-letter hand-off backs off (1 s, 2 s, …) and keeps the event until a store takes it")
    func deadLetterHandOffBacksOff() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(Self.configuration([server.url], stream: "HANDOFF"))
        let dlq = FlakyDlqHandler(failures: 2)
        let subscription = try await provider.subscribeDurable(
            consumer: "poison", filter: "events.>", options: SubscribeOptions(maxDeliver: 1, deadLetterHandler: dlq))
        try await provider.publish(Self.event(1))
        let pending = try #require(await subscription.next(timeout: .seconds(5)))
        try await pending.nak()  // the last allowed delivery: dead-letter it (the store fails twice)
        // The consumer loop runs the retried hand-offs; no delivery reaches it meanwhile.
        let deadline = ContinuousClock.now + .seconds(15)
        while dlq.stored.isEmpty, ContinuousClock.now < deadline {
            let leaked = try await subscription.next(timeout: .milliseconds(500))
            #expect(leaked == nil, "an event past maxDeliver reached the consumer")
        }
        #expect(dlq.stored.count == 1, "the hand-off succeeded once the store came back")
        let calls = dlq.calls
        try #require(calls.count == 3)
        #expect(
            calls[1] - calls[0] >= .milliseconds(900) && calls[1] - calls[0] < .seconds(4), "first retry after ~1 s")
        #expect(calls[2] - calls[1] >= .milliseconds(1900), "second retry after ~2 s")
        await subscription.close()
        await provider.shutdown()
    }

    // MARK: Item 11: acknowledgements

    /// How the late settlement below is made.
    enum LateSettlement: Sendable, CaseIterable {
        case termWithReason, term, doubleAck
    }

    @Test(
        "an event terminated or double-acked after its ack wait passed, which the server sent again meanwhile, is settled again and never shown twice",
        arguments: LateSettlement.allCases)
    func lateSettlementIsNotShownAgain(_ settlement: LateSettlement) async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(Self.configuration([server.url], stream: "LATETERM"))
        let dlq = MemoryDlqHandler()
        let worker = try await provider.subscribeDurable(
            consumer: "late", filter: "events.orders.>",
            options: SubscribeOptions(ackWait: .seconds(1), deadLetterHandler: dlq))
        try await provider.publish(Self.event(1))
        let first = try #require(await worker.next(timeout: .seconds(5)))
        // The ack wait passes before the term is sent, as on a loaded machine: the server has
        // sent the event again by the time the term reaches it.
        let redelivered = await eventually(within: .seconds(10), every: .milliseconds(100)) {
            guard
                let reply = try? await LoopbackClient.request(
                    port: server.port, subject: "$JS.API.CONSUMER.INFO.LATETERM.late"),
                let info = try? JSONValue(parsing: reply)
            else { return false }
            return (info["num_redelivered"]?.intValue ?? 0) >= 1
        }
        #expect(redelivered, "the server sent the event again")
        switch settlement {
        case .termWithReason: try await first.term(reason: "poison")
        case .term: try await first.term()
        case .doubleAck: try await first.doubleAck()
        }
        let again = try await worker.next(timeout: .seconds(2))
        #expect(again == nil, "the settled event was shown again (delivery \(again?.deliveryCount ?? 0))")
        #expect(
            dlq.letters().count == (settlement == .termWithReason ? 1 : 0),
            "dead-lettered once, or not at all without a reason")
        await worker.close()
        await provider.shutdown()
    }

    @Test("an ack that cannot be sent throws and leaves the delivery undecided")
    func failedAckIsVisible() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(Self.configuration([server.url], stream: "ACKFAIL"))
        let subscription = try await provider.subscribeDurable(consumer: "w", filter: "events.>")
        try await provider.publish(Self.event(1))
        let pending = try #require(await subscription.next(timeout: .seconds(5)))
        await provider.shutdown()
        await #expect(throws: CourierError.self) { try await pending.ack() }
        #expect(!pending.isFinalized)
    }

    // MARK: Faults

    @Test("server frozen (SIGSTOP) past the ack wait while publishing and consuming: nothing lost, nothing doubled")
    func frozenServer() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(Self.configuration([server.url], stream: "FROZEN"))
        let subscription = try await provider.subscribeDurable(
            consumer: "frozen-worker", filter: "events.>",
            options: SubscribeOptions(maxDeliver: 20, ackWait: .seconds(2)))
        let total = 600
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
            var processed: Set<String> = []
            var deliveries = 0
            let deadline = ContinuousClock.now + .seconds(90)
            while processed.count < total, ContinuousClock.now < deadline {
                guard let pending = try await subscription.next(timeout: .seconds(1)) else { continue }
                deliveries += 1
                processed.insert(pending.event.id)
                try await pending.ack()
            }
            return (processed, deliveries)
        }
        #expect(await eventually(within: .seconds(30)) { published.load(ordering: .relaxed) >= total / 3 })
        server.freeze()
        try await Task.sleep(for: .seconds(4))  // longer than the 2 s ack wait and request timeout
        server.thaw()
        let ids = try await publisher.value
        let (processed, deliveries) = try await consumer.value
        #expect(Set(ids).count == total)
        #expect(processed == Set(ids), "every published event was delivered")
        let info = try await provider.info()
        #expect(info.messages == UInt64(total), "no duplicate in the stream")
        // Redeliveries after the freeze are acked as they come; then nothing is left pending.
        while let late = try await subscription.next(timeout: .seconds(3)) { try await late.ack() }
        #expect(
            await eventually(within: .seconds(10)) {
                let detail = try? await server.streamDetail("FROZEN", consumers: true)
                let consumer = detail?["consumer_detail"]?.arrayValue?.first
                return consumer?["num_ack_pending"]?.intValue == 0
                    && consumer?["ack_floor"]?["stream_seq"]?.intValue == Int64(total)
            }, "every event acknowledged")
        Logger.note(
            "frozen server: \(total) published, \(processed.count) processed, \(deliveries) deliveries, \(info.messages) stored"
        )
        await subscription.close()
        await provider.shutdown()
    }

    @Test("a JetStream store on a small tmpfs filled by publishing: a sequence or a typed retryable error each time")
    func fullStore() async throws {
        let mount = try SmallTmpfs(megabytes: 8)
        defer { mount.remove() }
        let server = try await NATSServerHarness.start(arguments: ["-sd", mount.path])
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(Self.configuration([server.url], stream: "FULL"))
        let payload = String(repeating: "z", count: 16 * 1024)
        var successes = 0
        var failures: [CourierError] = []
        for i in 0..<2000 where failures.count < 20 {
            let event = Event(
                subject: "events.fill.x", category: "fill", payload: ["i": .int(Int64(i)), "pad": .string(payload)])
            do {
                _ = try await provider.publish(event, options: PublishOptions(timeout: .milliseconds(500)))
                successes += 1
            } catch let error as CourierError {
                failures.append(error)
            }
        }
        #expect(!failures.isEmpty, "the store never filled up (\(successes) stored)")
        let described = failures.prefix(3).map(\.description)
        #expect(failures.allSatisfy { $0.isRetryable }, "\(described)")
        #expect(try await provider.info().messages == UInt64(successes))
        Logger.note(
            "full store: \(successes) stored, then \(failures.count) refused with \(failures.first?.code.description ?? "-")"
        )
        await provider.shutdown()
    }
}

/// A tmpfs of a few MiB mounted on a temporary directory (root only; CI runs as root).
struct SmallTmpfs {
    let path: String

    init(megabytes: Int) throws {
        path = NSTemporaryDirectory() + "courier-tmpfs-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let status = mount("tmpfs", path, "tmpfs", 0, "size=\(megabytes)m")
        guard status == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(atPath: path)
            throw CourierTestingError("cannot mount a tmpfs on \(path) (needs root): \(reason)")
        }
    }

    func remove() {
        umount2(path, Int32(MNT_DETACH))
        try? FileManager.default.removeItem(atPath: path)
    }
}
#endif
