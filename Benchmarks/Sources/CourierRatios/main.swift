import Courier
import CourierTesting
import Foundation

// Paired benchmarks: each Courier figure next to a baseline measured alternately in the same
// run. Usage: CourierRatios [--suite NAME]... [--only TEXT]... [--rounds N] [--markdown FILE]
// [--side baseline|courier] (one side alone, for `perf stat` or `perf record`)
// A nats-server is taken from $COURIER_BENCH_NATS_URL or started here.

var suites: [String] = []
var rounds = 5
var markdownPath: String?
/// Only pairs whose name contains one of these (`--only "async publish"`); all when empty.
var only: [String] = []
var sides = Sides.both
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch argument {
    case "--suite": suites.append(arguments.popFirst() ?? "")
    case "--rounds": rounds = Int(arguments.popFirst() ?? "") ?? rounds
    case "--markdown": markdownPath = arguments.popFirst()
    case "--only": only.append(arguments.popFirst() ?? "")
    case "--side":
        guard let side = arguments.popFirst().flatMap(Sides.init(rawValue:)) else {
            FileHandle.standardError.write(Data("--side takes baseline or courier\n".utf8))
            exit(2)
        }
        sides = side
    default:
        FileHandle.standardError.write(Data("unknown argument \(argument)\n".utf8))
        exit(2)
    }
}
if suites.isEmpty { suites = ["memory", "jetstream", "crypto", "schema", "cloudevents", "routing", "ingest"] }

func log(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }

var server: NATSServerHarness?
@MainActor func natsURL() async throws -> String {
    if let url = ProcessInfo.processInfo.environment["COURIER_BENCH_NATS_URL"] { return url }
    if let server { return server.url }
    let started = try await NATSServerHarness.start()
    server = started
    return started.url
}

var sections: [String] = []
for suite in suites {
    switch suite {
    case "memory":
        sections.append(
            markdown(
                try await run(memoryPairs(), rounds: rounds, only: only, sides: sides, log: log),
                title: "Embedded provider"))
    case "crypto":
        sections.append(
            markdown(
                try await run(cryptoPairs(), rounds: rounds, only: only, sides: sides, log: log),
                title: "Encryption (AES-256-GCM, OpenSSL EVP)"))
    case "cloudevents":
        sections.append(
            markdown(
                try await run(cloudEventPairs(), rounds: rounds, only: only, sides: sides, log: log),
                title: "CloudEvents JSON format"
            ))
    case "ingest":
        sections.append(
            markdown(
                try await run(ingestPairs(), rounds: rounds, only: only, sides: sides, log: log),
                title: "Ingest core (no adapter I/O)"))
        let url = try await natsURL()
        sections.append(
            markdown(
                try await run(ingestJetStreamPairs(url: url), rounds: rounds, only: only, sides: sides, log: log),
                title: "Ingest into JetStream (same server)"))
    case "ingest-jetstream":
        let url = try await natsURL()
        sections.append(
            markdown(
                try await run(ingestJetStreamPairs(url: url), rounds: rounds, only: only, sides: sides, log: log),
                title: "Ingest into JetStream")
        )
    case "routing":
        sections.append(
            markdown(
                try await run(routingPairs(), rounds: rounds, only: only, sides: sides, log: log),
                title: "Routing (Broker.route, one matching trigger per event)"))
    case "schema":
        sections.append(
            markdown(
                try await run(validationPairs(), rounds: rounds, only: only, sides: sides, log: log),
                title: "Schema validation")
        )
    case "consume-anatomy":
        let url = try await natsURL()
        sections.append(
            markdown(
                try await run(consumeAnatomyPairs(url: url), rounds: rounds, only: only, sides: sides, log: log),
                title: "Where consume + ack's cost goes (memory storage, 128-byte payloads)"))
    case "jetstream":
        let url = try await natsURL()
        sections.append(
            markdown(
                try await run(jetStreamPairs(url: url), rounds: rounds, only: only, sides: sides, log: log),
                title: "JetStream (same server, 128-byte payloads)"))
    default:
        log("unknown suite \(suite)")
        exit(2)
    }
}
let output = sections.joined(separator: "\n\n") + "\n"
print(output)
if let markdownPath { try output.write(toFile: markdownPath, atomically: true, encoding: .utf8) }
server?.stop()
server?.cleanUp()
