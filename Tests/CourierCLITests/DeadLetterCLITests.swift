#if NATS && Encryption
import CourierCore
import CourierTesting
import Foundation
import Testing

/// `courier dlq`: a poison message dead-lettered by `courier sub --manual-ack` is listed there,
/// an `events.>` subscription never receives it, and replay puts it back.
@Suite("courier dlq", .natsServer)
struct DeadLetterCLITests {
    @Test("courier dlq list shows a poison message dead-lettered by courier sub --manual-ack")
    func listAndReplay() async throws {
        let url = try NATSServerTrait.url()
        let directory = NSTemporaryDirectory() + "courier-dlq-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let connection = ["--server", url, "--stream", "DLQCLI"]
        for key in ["a", "b"] {
            let made = try await runCourier(["keygen", "--out", "\(directory)/\(key).key"])
            #expect(made.status == 0, "\(made.errors)")
        }
        // A poison message (encrypted with a key the worker does not have), then a good one.
        let poison = try await runCourier(
            [
                "pub", "orders", "created", "--payload", #"{"order":"o-1"}"#, "--encrypt-key", "\(directory)/a.key",
                "--json",
            ]
                + connection)
        #expect(poison.status == 0, "\(poison.errors)")
        let poisonID = try JSONValue(parsing: poison.output)["id"]?.stringValue
        let good = try await runCourier(["pub", "orders", "created", "--payload", #"{"order":"o-2"}"#] + connection)
        #expect(good.status == 0, "\(good.errors)")

        let worker = try await runCourier(
            [
                "sub", "events.orders.>", "--durable", "worker", "--manual-ack", "--decrypt-key", "\(directory)/b.key",
                "--json", "--count", "1", "--timeout", "15",
            ] + connection)
        #expect(worker.status == 0, "\(worker.errors)")
        #expect(
            try JSONValue(parsing: worker.output)["payload"]?["order"] == "o-2", "the worker printed the good event")

        let listed = try await runCourier(["dlq", "list", "--json"] + connection)
        #expect(listed.status == 0, "\(listed.errors)")
        let letters = try listed.output.split(separator: "\n").map { try JSONValue(parsing: String($0)) }
        #expect(letters.count == 1)
        #expect(letters.first?["event"]?["id"]?.stringValue == poisonID)
        #expect(letters.first?["originalSubject"] == "events.orders.created")
        #expect(letters.first?["reason"]?.stringValue?.contains("decryption failed") == true)
        #expect(letters.first?["consumer"] == "worker")

        // Everything an events.> subscription reads: the two events, no dead letter.
        let watcher = try await runCourier(
            ["sub", "events.>", "--durable", "watcher", "--json", "--timeout", "3"] + connection)
        #expect(watcher.status == 0, "\(watcher.errors)")
        let seen = try watcher.output.split(separator: "\n").map { try JSONValue(parsing: String($0)) }
        #expect(seen.count == 2)
        #expect(seen.allSatisfy { $0["subject"] == "events.orders.created" && $0["metadata"]?["dlq_reason"] == nil })

        let replayed = try await runCourier(["dlq", "replay"] + connection)
        #expect(replayed.status == 0, "\(replayed.errors)")
        #expect(replayed.output.contains("replayed #"))
        let after = try await runCourier(["dlq", "list", "--json"] + connection)
        #expect(after.output.isEmpty, "the replayed letter was removed")
    }
}
#endif
