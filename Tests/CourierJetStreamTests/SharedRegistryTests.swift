#if NATS
import CourierCore
import CourierJetStream
import CourierTesting
import Foundation
import Testing

/// The subscriber registry in a JetStream key-value bucket, shared by several `EventBus`
/// instances on connections of their own (issue "Production topology", item 4).
@Suite("Shared registry in JetStream KV")
struct SharedRegistryTests {
    static func configuration(_ urls: [String]) -> JetStreamProvider.Configuration {
        var configuration = JetStreamProvider.Configuration(servers: urls)
        configuration.replicas = urls.count > 1 ? 3 : 1
        configuration.stream = "REGISTRY_EVENTS"
        configuration.reconnect = .init(maxAttempts: nil, wait: .milliseconds(100))
        configuration.connectTimeout = .seconds(2)
        configuration.requestTimeout = .seconds(3)
        return configuration
    }

    /// A bus on its own connection, with the registry in `bucket`.
    static func instance(_ urls: [String], bucket: String) async throws -> (JetStreamProvider, EventBus) {
        let provider = try await JetStreamProvider.connect(configuration(urls))
        var configuration = EventBus.Configuration()
        configuration.stateStore = try await JetStreamKVStateStore.open(provider: provider, bucket: bucket)
        return (provider, EventBus(pipeline: provider, configuration: configuration))
    }

    @Test("two buses on one KV registry see each other's changes without restarting")
    func twoInstancesShareTheRegistry() async throws {
        let server = try await NATSServerHarness.start()
        defer { server.stop() }
        let (providerA, busA) = try await Self.instance([server.url], bucket: "SHARED")
        let (providerB, busB) = try await Self.instance([server.url], bucket: "SHARED")
        let followA = Task { try await busA.followRegistry() }
        let followB = Task { try await busB.followRegistry() }

        try await busA.updateSubscription(SubscriptionFilter(subscriberID: "billing", subjects: ["events.orders.>"]))
        #expect(
            await eventually(within: .seconds(10)) { busB.subscription("billing") != nil },
            "B never saw A's registration")
        #expect(busB.subscription("billing")?.subjects == ["events.orders.>"])

        // Subscriber ids with characters key names do not allow.
        let odd = "ops team/β.1"
        try await busB.updateSubscription(
            SubscriptionFilter(subscriberID: odd, subjects: ["events.ops.>"], durable: false))
        #expect(await eventually(within: .seconds(10)) { busA.subscription(odd)?.durable == false }, "A never saw B's")

        // Replacing and removing travel too.
        try await busB.updateSubscription(SubscriptionFilter(subscriberID: "billing", subjects: ["events.invoices.>"]))
        #expect(
            await eventually(within: .seconds(10)) { busA.subscription("billing")?.subjects == ["events.invoices.>"] })
        try await busA.removeSubscription(odd)
        #expect(
            await eventually(within: .seconds(10)) { busB.subscription(odd) == nil }, "B kept a removed registration")

        // Concurrent writers on both connections: nobody's change is lost.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<20 {
                group.addTask {
                    try await busA.updateSubscription(
                        SubscriptionFilter(subscriberID: "a\(i)", subjects: ["events.a.>"]))
                }
                group.addTask {
                    try await busB.updateSubscription(
                        SubscriptionFilter(subscriberID: "b\(i)", subjects: ["events.b.>"]))
                }
                // Both instances replacing the same registration at once.
                group.addTask {
                    try await busA.updateSubscription(
                        SubscriptionFilter(subscriberID: "shared", subjects: ["events.a\(i).>"]))
                }
                group.addTask {
                    try await busB.updateSubscription(
                        SubscriptionFilter(subscriberID: "shared", subjects: ["events.b\(i).>"]))
                }
            }
            try await group.waitForAll()
        }
        let expected = Set((0..<20).flatMap { ["a\($0)", "b\($0)"] } + ["billing", "shared"])
        let stored = try await JetStreamKVStateStore.open(provider: providerA, bucket: "SHARED").load()
        #expect(Set(stored.map(\.subscriberID)) == expected)
        #expect(
            await eventually(within: .seconds(10)) {
                Set(busA.listSubscriptions().map(\.subscriberID)) == expected
                    && Set(busB.listSubscriptions().map(\.subscriberID)) == expected
            }, "the instances did not converge on the stored registry")

        // A third instance started later restores everything.
        let (providerC, busC) = try await Self.instance([server.url], bucket: "SHARED")
        #expect(try await busC.restoreSubscriptions() == expected.count)

        followA.cancel()
        followB.cancel()
        _ = await (followA.result, followB.result)
        for provider in [providerA, providerB, providerC] { await provider.shutdown() }
    }

    @Test("a bad bucket name and a missing bucket that may not be created are typed errors")
    func badBuckets() async throws {
        let server = try await NATSServerHarness.start()
        defer { server.stop() }
        let provider = try await JetStreamProvider.connect(Self.configuration([server.url]))
        let bad = await #expect(throws: CourierError.self) {
            try await JetStreamKVStateStore.open(provider: provider, bucket: "no.dots")
        }
        #expect(bad?.code == .invalidConfiguration)
        #expect(bad?.input == "no.dots")
        var strict = Self.configuration([server.url])
        strict.provisioning = .requireExisting
        let existing = try await JetStreamProvider.connect(strict)
        let missing = await #expect(throws: CourierError.self) {
            try await JetStreamKVStateStore.open(provider: existing, bucket: "MISSING")
        }
        #expect(missing?.code == .notFound)
        #expect(missing?.input == "MISSING")
        await existing.shutdown()
        await provider.shutdown()
    }

    @Test("the registry keeps flowing between instances across a bucket leader change (3-node cluster)")
    func registryAcrossLeaderChange() async throws {
        let cluster = try await NATSClusterHarness.start(nodes: 3)
        defer { cluster.stop() }
        // Each instance prefers a different node.
        let (providerA, busA) = try await cluster.placing { try await Self.instance(cluster.urls, bucket: "CLUSTERED") }
        let (providerB, busB) = try await Self.instance(Array(cluster.urls.reversed()), bucket: "CLUSTERED")
        let followB = Task { try await busB.followRegistry() }
        #expect(try await cluster.streamConfig("KV_CLUSTERED")["num_replicas"]?.intValue == 3)

        try await busA.updateSubscription(SubscriptionFilter(subscriberID: "before", subjects: ["events.x.>"]))
        #expect(await eventually(within: .seconds(10)) { busB.subscription("before") != nil })

        let leader = try #require(await cluster.streamLeader("KV_CLUSTERED"))
        cluster.nodes[leader].kill()
        let newLeader = try await cluster.waitForStreamLeader("KV_CLUSTERED", excluding: leader)
        #expect(newLeader != leader)
        try await busA.updateSubscription(SubscriptionFilter(subscriberID: "after-kill", subjects: ["events.y.>"]))
        // B's watch is an ordered consumer: it notices the dead leader by missed heartbeats and is
        // recreated (10–25 s alone here, longer in the full parallel run).
        #expect(
            await eventually(within: .seconds(60)) { busB.subscription("after-kill") != nil },
            "B did not see a change made after the bucket's leader was killed")

        try await cluster.nodes[leader].restart()
        try await cluster.stepDown(stream: "KV_CLUSTERED")
        try await busA.updateSubscription(SubscriptionFilter(subscriberID: "after-step-down", subjects: ["events.z.>"]))
        #expect(
            await eventually(within: .seconds(60)) { busB.subscription("after-step-down") != nil },
            "B did not see a change made after a leader step-down")
        print(
            "registry across leader change: killed node \(leader), new leader \(newLeader), B holds \(busB.listSubscriptions().count) registrations"
        )
        followB.cancel()
        _ = await followB.result
        await providerA.shutdown()
        await providerB.shutdown()
    }
}
#endif
