#if Routing && NATS
import CourierCore
import CourierJetStream
import CourierRouting
import CourierTesting
import Foundation
import Logging
import Synchronization
import Testing

/// The durable broker on an R3 stream of a real 3-node cluster (issue "Production topology",
/// item 2).
@Suite("Durable routing on a 3-node cluster")
struct ClusterRoutingTests {
    @Test("the durable broker keeps routing through a leader kill and a step-down, nothing lost")
    func brokerThroughLeaderChange() async throws {
        // As in production: every write synced before it is acknowledged (nats-server 2.10+).
        let cluster = try await NATSClusterHarness.start(
            nodes: 3, configuration: NATSServerHarness.syncAlwaysConfiguration)
        defer { cluster.stop() }
        var configuration = JetStreamProvider.Configuration(servers: cluster.urls)
        configuration.stream = "ROUTEFAILOVER"
        configuration.replicas = 3
        configuration.reconnect = .init(maxAttempts: nil, wait: .milliseconds(100))
        configuration.connectTimeout = .seconds(2)
        configuration.requestTimeout = .seconds(2)
        let publisher = try await cluster.placing { try await JetStreamProvider.connect(configuration) }
        configuration.servers = cluster.urls.reversed()
        let routerSide = try await JetStreamProvider.connect(configuration)
        let sink = CollectorSink("cluster")
        let broker = Broker(
            configuration: .init(
                name: "cluster-router", deadLetters: routerSide.deadLetters,
                logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })))
        try broker.addTrigger(Trigger(name: "collect", sink: sink))
        let run = Task { try await broker.run(Broker.Source(provider: routerSide)) }
        #expect(await broker.waitUntilReading(timeout: .seconds(30)))

        let published = Atomic<Int>(0)
        let faultsDone = Atomic<Bool>(false)
        // Publishes until the faults are over, at least 2 000 events and at most 100 000.
        let publishing = Task {
            var ids: [String] = []
            while ids.count < 100_000, !(faultsDone.load(ordering: .relaxed) && ids.count >= 2000) {
                var pending = (ids.count..<ids.count + 50).map { i in
                    Event(subject: "events.jobs.run", category: "jobs", payload: ["i": .int(Int64(i))])
                }
                ids += pending.map(\.id)
                for _ in 0..<10 where !pending.isEmpty {
                    let results = await publisher.publishBatch(pending, timeout: .seconds(30))
                    pending = zip(pending, results).compactMap { event, result in
                        if case .failure = result { return event } else { return nil }
                    }
                }
                #expect(pending.isEmpty)
                published.store(ids.count, ordering: .relaxed)
            }
            return ids
        }
        let faults = try await cluster.leaderFaults(
            stream: "ROUTEFAILOVER", schedule: [(1000, .killLeader), (2000, .stepDown)],
            progress: { published.load(ordering: .relaxed) })
        faultsDone.store(true, ordering: .relaxed)
        let ids = await publishing.value
        let total = ids.count
        #expect(
            await eventually(within: .seconds(60)) { Set(sink.events.map(\.id)).count >= total },
            "routed \(Set(sink.events.map(\.id)).count) of \(total)")
        let routed = sink.events.map(\.id)
        #expect(Set(routed) == Set(ids), "events lost in routing")
        #expect(try await settled { try await routerSide.deadLetterQueue.count() } == 0, "nothing was dead-lettered")
        print(
            "failover routing (server \(try await cluster.nodes[0].version())): \(faults.joined(separator: "; ")); published \(ids.count), routed \(routed.count) (\(routed.count - Set(routed).count) repeated deliveries), distinct \(Set(routed).count)"
        )
        run.cancel()
        _ = try? await run.value
        await routerSide.shutdown()
        await publisher.shutdown()
    }
}
#endif
