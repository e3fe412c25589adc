#if NATS
import CourierCore
import CourierJetStream
import CourierTesting
import Synchronization
import Testing

/// The cluster harness's own recovery, which otherwise runs only when nats-server misbehaves.
@Suite("3-node cluster harness")
struct ClusterHarnessTests {
    @Test("placing starts a cluster that refused placement over with empty stores, and it places an R3 stream")
    func placingStartsOver() async throws {
        let cluster = try await NATSClusterHarness.start(nodes: 3)
        defer { cluster.stop() }
        let pids = cluster.nodes.compactMap(\.pid)
        let calls = Atomic<Int>(0)
        let provider = try await cluster.placing {
            // The first call fails as a cluster refusing placement for the whole window does.
            if calls.add(1, ordering: .relaxed).newValue == 1 {
                throw CourierError(
                    .transient, "cannot create stream: no suitable peers for placement (JetStream error 10005)")
            }
            return try await JetStreamProvider.connect(FailoverTests.configuration(cluster.urls, stream: "HARNESS"))
        }
        #expect(calls.load(ordering: .relaxed) == 2)
        #expect(Set(cluster.nodes.compactMap(\.pid)).isDisjoint(with: pids), "every node was restarted")
        #expect(try await cluster.streamConfig("HARNESS")["num_replicas"]?.intValue == 3)
        #expect(
            try await provider.publish(Event(subject: "events.harness.x", category: "harness", payload: nil)).sequence
                == 1)
        await provider.shutdown()
    }
}
#endif
