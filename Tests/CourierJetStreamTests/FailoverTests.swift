#if NATS
import CourierCore
import CourierIngest
import CourierJetStream
import CourierTesting
import Foundation
import Synchronization
import Testing

/// R3 file streams on a real 3-node cluster while the stream leader is SIGKILLed and restarted
/// twice, then asked to step down (issue "Production topology", item 2). Each test prints its
/// figures.
@Suite("Failover on a 3-node cluster")
struct FailoverTests {
    static func configuration(_ urls: [String], stream: String) -> JetStreamProvider.Configuration {
        var configuration = JetStreamProvider.Configuration(servers: urls)
        configuration.stream = stream
        configuration.replicas = 3
        configuration.storage = .file
        configuration.reconnect = .init(maxAttempts: nil, wait: .milliseconds(100))
        configuration.connectTimeout = .seconds(2)
        configuration.requestTimeout = .seconds(5)
        return configuration
    }

    /// What a manual-ack consumer saw.
    final class Consumed: Sendable {
        private let state = Mutex<(ids: Set<String>, deliveries: Int, redeliveries: Int, failedAcks: Int)>(
            ([], 0, 0, 0))
        var distinct: Int { state.withLock { $0.ids.count } }
        var figures: (ids: Set<String>, deliveries: Int, redeliveries: Int, failedAcks: Int) { state.withLock { $0 } }

        func record(_ pending: PendingEvent, acked: Bool) {
            state.withLock {
                $0.ids.insert(pending.event.id)
                $0.deliveries += 1
                if pending.deliveryCount > 1 { $0.redeliveries += 1 }
                if !acked { $0.failedAcks += 1 }
            }
        }
    }

    @Test("a pipelined publisher and a manual-ack durable consumer through two leader kills and a step-down")
    func publisherAndConsumerThroughFailover() async throws {
        // As in production: every write synced before it is acknowledged (nats-server 2.10+).
        let cluster = try await NATSClusterHarness.start(
            nodes: 3, configuration: NATSServerHarness.syncAlwaysConfiguration)
        defer { cluster.stop() }
        let stream = "FAILOVER"
        let publisher = try await cluster.placing {
            try await JetStreamProvider.connect(Self.configuration(cluster.urls, stream: stream))
        }
        let consumerSide = try await JetStreamProvider.connect(
            Self.configuration(Array(cluster.urls.reversed()), stream: stream))
        let subscription = try await consumerSide.subscribeDurable(
            consumer: "workers", filter: "events.orders.>",
            options: SubscribeOptions(maxDeliver: 50, ackWait: .seconds(5)))
        let batch = 100
        let published = Atomic<Int>(0)
        let faultsDone = Atomic<Bool>(false)
        let consumed = Consumed()
        // Publishes batch after batch until the faults are over (so every fault hits a running
        // publisher), at least 3 000 events and at most 100 000.
        let publishing = Task {
            var ids: [String] = []
            var start = 0
            while start < 100_000, !(faultsDone.load(ordering: .relaxed) && start >= 3000) {
                let events = (start..<start + batch).map { i in
                    Event(subject: "events.orders.created", category: "orders", payload: ["i": .int(Int64(i))])
                }
                start += batch
                // Retried (same ids) until every event of the batch is stored: a failure past the
                // publish timeout is retryable and resent, never skipped.
                var pending = events
                for _ in 0..<10 where !pending.isEmpty {
                    let results = await publisher.publishBatch(pending, timeout: .seconds(30))
                    pending = zip(pending, results).compactMap { event, result in
                        if case .failure = result { return event } else { return nil }
                    }
                }
                #expect(pending.isEmpty, "\(pending.count) events of a batch could not be published")
                ids += events.map(\.id)
                published.store(ids.count, ordering: .relaxed)
            }
            return ids
        }
        // Consumes until cancelled: deliveries whose ack was lost in a leader change come back
        // after the ack wait and are acked then.
        let consuming = Task {
            let deadline = ContinuousClock.now + .seconds(300)
            while !Task.isCancelled, ContinuousClock.now < deadline {
                guard let pending = try? await subscription.next(timeout: .seconds(1)) else { continue }
                let acked = (try? await pending.ack()) != nil
                consumed.record(pending, acked: acked)
            }
        }
        let faults = try await cluster.leaderFaults(
            stream: stream, schedule: [(1000, .killLeader), (2500, .killLeader), (4000, .stepDown)],
            progress: { published.load(ordering: .relaxed) })
        faultsDone.store(true, ordering: .relaxed)
        let ids = await publishing.value
        let total = ids.count
        #expect(
            await eventually(within: .seconds(120)) { consumed.distinct >= total }, "delivered \(consumed.distinct)")

        #expect(ids.count == total)
        let delivered = consumed.figures.ids
        #expect(delivered == Set(ids), "\(total - delivered.intersection(ids).count) published events never delivered")
        let info = try await settled { try await publisher.info() }
        #expect(info.messages == UInt64(total), "the stream holds \(info.messages), not the \(total) published")
        let stored = try await settled {
            try await publisher.history(filter: "events.orders.>", limit: total + 100)
        }
        #expect(
            stored.count == total && Set(stored.map(\.id)).count == total,
            "read back \(stored.count) events, \(Set(stored.map(\.id)).count) distinct, of \(total)")
        // Every delivery acked in the end: nothing pending, nothing awaiting an ack.
        let settled = await eventually(within: .seconds(60)) {
            let state = await cluster.consumerState(stream: stream, consumer: "workers")
            return state?.pending == 0 && state?.ackPending == 0
        }
        let consumerState = await cluster.consumerState(stream: stream, consumer: "workers")
        #expect(settled, "the consumer still has work: \(String(describing: consumerState))")
        consuming.cancel()
        await consuming.value
        let figures = consumed.figures
        print(
            "failover publish/consume (server \(try await cluster.nodes[0].version())): \(faults.joined(separator: "; ")); published \(ids.count), delivered \(figures.deliveries), redelivered \(figures.redeliveries), failed acks \(figures.failedAcks), stored \(info.messages), publish retries \(info.details["publishRetries"] ?? "?"), reorders \(info.details["publishReorders"] ?? "?")"
        )
        await subscription.close()
        await consumerSide.shutdown()
        await publisher.shutdown()
    }

    @Test("IngestBus → JetStreamAdapter through two leader kills and a step-down, in per-shard order")
    func ingestThroughFailover() async throws {
        // As in production: every write synced before it is acknowledged (nats-server 2.10+).
        let cluster = try await NATSClusterHarness.start(
            nodes: 3, configuration: NATSServerHarness.syncAlwaysConfiguration)
        defer { cluster.stop() }
        let stream = "INGESTFAILOVER"
        let provider = try await cluster.placing {
            try await JetStreamProvider.connect(Self.configuration(cluster.urls, stream: stream))
        }
        let bus = try IngestBus(
            configuration: .init(
                shards: 2,
                ringCapacity: 4096,
                backpressure: .block(timeout: .seconds(60)),
                adapter: JetStreamAdapter(provider: provider, publishTimeout: .seconds(60)),
                retryBudget: 20
            )
        )
        // Ingests a steady stream until the faults are over, at least 20 000 events and at most
        // 400 000.
        let faultsDone = Atomic<Bool>(false)
        let producer = Task.detached {
            var index = 0
            while index < 400_000, !(faultsDone.load(ordering: .relaxed) && index >= 20_000) {
                let event = Event(
                    subject: "events.ingest.s\(index % 16)", category: "ingest", payload: ["i": .int(Int64(index))])
                try bus.ingestRaw(RawEvent(event))
                index += 1
                if index % 500 == 0 { try await Task.sleep(for: .milliseconds(10)) }
            }
            return index
        }
        let faults = try await cluster.leaderFaults(
            stream: stream, schedule: [(4000, .killLeader), (10_000, .killLeader), (16_000, .stepDown)],
            progress: { Int(bus.stats.eventsDispatched) })
        faultsDone.store(true, ordering: .relaxed)
        let total = try await producer.value
        let stats = await bus.shutdown(deadline: .seconds(120))
        #expect(stats.eventsDispatched == UInt64(total) && stats.eventsDropped == 0, "\(stats)")
        let firstCount = try await settled { try await provider.info() }.messages
        var info = try await settled { try await provider.info() }
        _ = await eventually(within: .seconds(30), every: .milliseconds(250)) {
            if let latest = try? await provider.info() { info = latest }
            return info.messages >= UInt64(total)
        }
        print(
            "ingest failover: stream count right after the faults \(firstCount), settled \(info.messages) (leader \(info.replicaSet?.leader ?? "?"))"
        )
        #expect(info.messages == UInt64(total), "the stream holds \(info.messages), not the \(total) ingested")
        let messages = try await settled { try await provider.readStored(from: 1, limit: total + 100) }
        // Each way this can go wrong named apart: a short read, stored messages without their
        // dedupe id, an id stored twice.
        let ids = messages.compactMap(\.messageID)
        #expect(messages.count == total, "read \(messages.count) stored messages of \(total)")
        #expect(ids.count == messages.count, "\(messages.count - ids.count) stored messages without a Nats-Msg-Id")
        #expect(Set(ids).count == ids.count, "\(ids.count - Set(ids).count) ids stored twice")
        let outOfOrder = eventsOutOfShardOrder(messages)
        if NATSServerHarness.syncAlwaysConfiguration != nil {
            #expect(outOfOrder == 0, "\(outOfOrder) events stored out of shard order")
        } else {
            // nats-server 2.9 cannot sync every write: across a leader kill it can refuse one
            // message and store the next (seen once in CI). Never hidden: the publisher reports it.
            let reported = UInt64(info.details["publishReorders"] ?? "") ?? 0
            #expect(outOfOrder == 0 || reported > 0, "\(outOfOrder) events out of shard order, none reported")
        }
        print(
            "failover ingest (server \(try await cluster.nodes[0].version())): \(faults.joined(separator: "; ")); ingested \(total), dispatched \(stats.eventsDispatched), batch retries \(stats.batchRetries), stored \(info.messages), out of shard order \(outOfOrder), publish retries \(info.details["publishRetries"] ?? "?"), reorders \(info.details["publishReorders"] ?? "?")"
        )
        await provider.shutdown()
    }

    @Test("a service connecting while a node restarts creates its R3 stream once the node is back")
    func provisioningWaitsForPlacement() async throws {
        let cluster = try await NATSClusterHarness.start(nodes: 3)
        defer { cluster.stop() }
        // A graceful stop tells the meta leader the node is gone: it cannot place 3 replicas.
        cluster.nodes[2].stop()
        #expect(
            await eventually(within: .seconds(30)) {
                for node in cluster.nodes.prefix(2) {
                    let meta = try? await node.monitor("/jsz")["meta_cluster"]
                    guard meta?["leader"]?.stringValue == "n\(cluster.nodes.firstIndex { $0 === node }! + 1)" else {
                        continue
                    }
                    let peer = meta?["replicas"]?.arrayValue?.first { $0["name"]?.stringValue == "n3" }
                    return peer?["offline"]?.boolValue == true || peer?["current"]?.boolValue == false
                }
                return false
            }, "the meta leader never saw n3 leave")
        let connecting = Task {
            try await JetStreamProvider.connect(Self.configuration(cluster.urls, stream: "PLACED"))
        }
        try await Task.sleep(for: .seconds(1))
        try await cluster.nodes[2].restart()
        let provider = try await connecting.value
        let info = try await provider.info()
        #expect(info.details["replicas"] == "3", "\(info.details)")
        #expect(
            try await provider.publish(Event(subject: "events.orders.placed", category: "orders", payload: [:]))
                .sequence == 1)
        await provider.shutdown()
    }
}
#endif
