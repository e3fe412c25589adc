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

        let first = try await runCourier(arguments)
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
