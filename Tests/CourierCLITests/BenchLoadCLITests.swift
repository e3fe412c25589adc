#if NATS
import CourierCore
import CourierTesting
import Foundation
import Testing

/// `courier bench pub|sub|pubsub`: progress on standard error, a summary or one JSON object on
/// standard output, against the embedded provider and against JetStream.
@Suite("courier bench pub|sub|pubsub", .natsServer)
struct BenchLoadCLITests {
    /// Checks a `--json` result: counts, positive rates, ordered percentiles.
    static func check(_ output: String, kind: String, msgs: Int, publishes: Bool, subscribes: Bool) throws {
        let result = try JSONValue(parsing: output)
        #expect(result["kind"]?.stringValue == kind)
        #expect(result["msgs"]?.intValue == Int64(msgs))
        #expect((result["publish"] != nil) == publishes)
        #expect((result["subscribe"] != nil) == subscribes)
        if publishes {
            #expect((result["publish"]?["msgsPerSecond"]?.doubleValue ?? 0) > 0)
            let latency = result["publishLatency"]
            let values = ["p50", "p90", "p99", "p99.9"].map { latency?[$0 + "Nanoseconds"]?.intValue ?? -1 }
            #expect(values.allSatisfy { $0 > 0 }, "\(values)")
            #expect(values == values.sorted(), "percentiles grow: \(values)")
        }
        if subscribes { #expect((result["subscribe"]?["msgsPerSecond"]?.doubleValue ?? 0) > 0) }
    }

    @Test("against the embedded provider: pub, sub and pubsub in every mode")
    func embedded() async throws {
        for mode in ["sync", "async", "batch"] {
            let run = try await runCourier([
                "bench", "pubsub", "--msgs", "3000", "--subs", "2", "--mode", mode, "--json",
            ])
            #expect(run.status == 0, "\(mode): \(run.errors)")
            try Self.check(run.output, kind: "pubsub", msgs: 3000, publishes: true, subscribes: true)
            #expect(run.errors.contains("100%"), "a progress bar on standard error")
        }
        let sub = try await runCourier(["bench", "sub", "--msgs", "3000", "--json"])
        #expect(sub.status == 0, "\(sub.errors)")
        try Self.check(sub.output, kind: "sub", msgs: 3000, publishes: false, subscribes: true)
    }

    @Test("against JetStream: the summary names the server and reports rate, MB/s and percentiles")
    func jetStream() async throws {
        let url = try NATSServerTrait.url()
        let run = try await runCourier([
            "bench", "pubsub", "--msgs", "5000", "--mode", "async", "--server", url, "--storage", "memory",
        ])
        #expect(run.status == 0, "\(run.errors)")
        #expect(run.output.contains("against JetStream"), "\(run.output)")
        #expect(run.output.contains("Pub stats:") && run.output.contains("MB/s"), "\(run.output)")
        #expect(run.output.contains("p99.9"), "\(run.output)")
        #expect(run.output.contains("Sub stats:"), "\(run.output)")
        let json = try await runCourier([
            "bench", "pub", "--msgs", "3000", "--mode", "batch", "--pubs", "2", "--server", url, "--json", "--quiet",
        ])
        #expect(json.status == 0, "\(json.errors)")
        try Self.check(json.output, kind: "pub", msgs: 3000, publishes: true, subscribes: false)
        #expect(!json.errors.contains("%]"), "--quiet: no progress bar")
    }

    @Test("--mode core and bad numbers are refused with the option named")
    func badOptions() async throws {
        let core = try await runCourier(["bench", "pub", "--mode", "core"])
        #expect(core.status != 0)
        #expect(core.errors.contains("--mode core"), "\(core.errors)")
        let msgs = try await runCourier(["bench", "sub", "--msgs", "0"])
        #expect(msgs.status != 0)
        #expect(msgs.errors.contains("--msgs"), "\(msgs.errors)")
    }
}
#endif
