#if NATS
import CourierCore
import CourierTesting
import Foundation
import Testing

/// `courier info` on a 3-node cluster (issue "Production topology", item 5).
@Suite("courier info on a cluster")
struct ClusterInfoCLITests {
    @Test("courier info --server <3 URLs> shows an R3 stream's leader and replicas, and the new leader after a kill")
    func infoFollowsTheLeader() async throws {
        let cluster = try await NATSClusterHarness.start(nodes: 3)
        defer { cluster.stop() }
        let servers = cluster.urls.joined(separator: ",")
        let arguments = ["info", "--server", servers, "--stream", "CLI_R3", "--replicas", "3", "--json"]

        // The first run creates the stream. A freshly started 2.15 cluster sometimes refuses
        // placement for the whole 60 s that connecting retries it: then the cluster starts over
        // (NATSClusterHarness.placing), so the run gets longer than that window to fail in.
        let first = try await cluster.placing {
            let run = try await runCourier(arguments, timeout: .seconds(120))
            if run.status != 0, run.errors.contains("10005") { throw CourierError(.transient, run.errors) }
            return run
        }
        #expect(first.status == 0, "\(first.errors)")
        let before = try JSONValue(parsing: first.output)
        #expect(before["details"]?["replicas"]?.stringValue == "3")
        #expect(before["details"]?["server"]?.stringValue?.isEmpty == false)
        let leaderName = try #require(before["replicaSet"]?["leader"]?.stringValue, "no leader in \(first.output)")
        let followers = before["replicaSet"]?["followers"]?.arrayValue ?? []
        #expect(followers.count == 2, "\(first.output)")
        #expect(followers.allSatisfy { $0["lag"]?.intValue != nil && $0["current"]?.boolValue != nil })
        let leader = try #require(cluster.index(ofServer: leaderName))
        #expect(await cluster.streamLeader("CLI_R3") == leader)

        cluster.nodes[leader].kill()
        let newLeader = try await cluster.waitForStreamLeader("CLI_R3", excluding: leader)
        let second = try await runCourier(arguments)
        #expect(second.status == 0, "\(second.errors)")
        let after = try JSONValue(parsing: second.output)
        let newLeaderName = try #require(after["replicaSet"]?["leader"]?.stringValue, "no leader in \(second.output)")
        #expect(newLeaderName != leaderName)
        #expect(cluster.index(ofServer: newLeaderName) == newLeader)

        let text = try await runCourier(Array(arguments.dropLast()))
        #expect(text.status == 0, "\(text.errors)")
        #expect(text.output.contains("leader \(newLeaderName)"), "\(text.output)")
        #expect(text.output.contains("replica \(leaderName)"), "the killed node is not listed: \(text.output)")
        print("courier info after killing \(leaderName):\n\(text.output)")
    }
}
#endif
