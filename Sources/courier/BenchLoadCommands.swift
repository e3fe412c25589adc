import ArgumentParser
import Courier
import Foundation
import Histogram
import Synchronization

/// What `courier bench pub|sub|pubsub` take: the load, how it is published, where it goes.
struct BenchLoadOptions: ParsableArguments {
    @Option(name: .long, help: "Messages each subscriber receives, and publishers send in all.")
    var msgs: Int = 100_000

    @Option(name: .long, help: "Payload bytes per message (the event's data field).")
    var size: Int = 128

    @Option(name: .long, help: "Concurrent publishers (pub, pubsub); they share --msgs.")
    var pubs: Int = 1

    @Option(name: .long, help: "Subscribers (sub, pubsub), each on its own durable consumer, each receiving --msgs.")
    var subs: Int = 1

    @Option(
        name: .long,
        help: """
            sync: publish and await each acknowledgement; async: publishBatch of --batch events, \
            four calls in flight per publisher; batch: the ingest core's adapter (atomic batches on \
            nats-server 2.12+ with allow_atomic). core (plain NATS) is not offered: Courier only \
            publishes to a stream.
            """)
    var mode: String = "async"

    @Option(name: .long, help: "Events per publishBatch call (--mode async).")
    var batch: Int = 1000

    @Flag(name: .long, help: "No progress bar on standard error.")
    var quiet = false

    @Flag(name: .long, help: "Print one JSON object on standard output instead of the summary.")
    var json = false

    #if NATS
    @OptionGroup(title: "Connection (JetStream; without --server the embedded provider is used)")
    var connection: ConnectionOptions

    /// The connection options, for ``benchTarget(_:)``.
    var connectionOptions: ConnectionOptions? { connection }
    #else
    /// No connection options without the NATS trait.
    var connectionOptions: Never? { nil }
    #endif

    func validate() throws {
        guard msgs >= 1, msgs <= 1_000_000_000 else { throw ValidationError("--msgs must be 1…1000000000") }
        guard size >= 0, size <= 1 << 20 else { throw ValidationError("--size must be 0…1048576") }
        guard (1...64).contains(pubs) else { throw ValidationError("--pubs must be 1…64, got \(pubs)") }
        guard (1...64).contains(subs) else { throw ValidationError("--subs must be 1…64, got \(subs)") }
        guard (1...100_000).contains(batch) else { throw ValidationError("--batch must be 1…100000, got \(batch)") }
        switch mode {
        case "sync", "async", "batch": break
        case "core":
            throw ValidationError(
                "--mode core is not offered: Courier publishes events to a stream only; use sync, async or batch")
        default: throw ValidationError("--mode must be sync, async or batch, got '\(mode)'")
        }
    }
}

/// The provider a bench runs against: the embedded one, or JetStream with --server.
struct BenchTarget {
    let provider: any EventProvider
    let description: String
    let prefix: String
    let shutdown: @Sendable () async -> Void

    static func make(server: String?, connect: () async throws -> (JetStreamProviderBox, String, String)) async throws
        -> BenchTarget
    {
        guard server != nil else {
            var configuration = MemoryProvider.Configuration()
            configuration.maxEvents = 50_000_000
            let provider = MemoryProvider(configuration: configuration)
            return BenchTarget(
                provider: provider, description: "embedded memory provider", prefix: Subjects.defaultPrefix,
                shutdown: { await provider.shutdown() })
        }
        let (box, description, prefix) = try await connect()
        return BenchTarget(
            provider: box.provider, description: description, prefix: prefix,
            shutdown: { await box.provider.shutdown() })
    }
}

/// Holds a JetStream provider without naming its type where the NATS trait is off.
struct JetStreamProviderBox {
    let provider: any EventProvider
}

/// `courier bench pub|sub|pubsub`: each subcommand is one ``BenchKind`` over the same options.
protocol BenchLoadCommand: AsyncParsableCommand {
    static var kind: BenchKind { get }
    var global: GlobalOptions { get }
    var load: BenchLoadOptions { get }
}

extension BenchLoadCommand {
    func run() async throws {
        global.bootstrapLogging()
        try await runBench(kind: Self.kind, load: load, target: try await benchTarget(load.connectionOptions))
    }
}

struct BenchPubCommand: BenchLoadCommand {
    static let configuration = CommandConfiguration(
        commandName: "pub",
        abstract: "Publish --msgs events and report messages/s, MB/s and publish latency percentiles.",
        discussion: """
            Runs against the embedded provider, or JetStream with --server (stream BENCH, prefix \
            bench unless --stream/--prefix say otherwise; storage and replicas as --storage and \
            --replicas). A progress bar goes to standard error.
            """
    )
    static let kind = BenchKind.pub
    @OptionGroup var global: GlobalOptions
    @OptionGroup var load: BenchLoadOptions
}

struct BenchSubCommand: BenchLoadCommand {
    static let configuration = CommandConfiguration(
        commandName: "sub",
        abstract: "Consume --msgs events with manual acks on --subs durable consumers and report the rate.",
        discussion: """
            The events are published first (not timed, with publishBatch) under a subject of this run \
            alone; then every subscriber reads all of them from its own durable consumer and \
            acknowledges each one.
            """
    )
    static let kind = BenchKind.sub
    @OptionGroup var global: GlobalOptions
    @OptionGroup var load: BenchLoadOptions
}

struct BenchPubSubCommand: BenchLoadCommand {
    static let configuration = CommandConfiguration(
        commandName: "pubsub",
        abstract: "Publish and consume at once: --pubs publishers, --subs durable consumers with manual acks.",
        discussion: """
            Subscribers start first, on durable consumers of this run's subject; the run ends when \
            every subscriber received every event.
            """
    )
    static let kind = BenchKind.pubsub
    @OptionGroup var global: GlobalOptions
    @OptionGroup var load: BenchLoadOptions
}

#if NATS
/// JetStream when --server (or $NATS_URL) names one, else the embedded provider.
func benchTarget(_ connection: ConnectionOptions?) async throws -> BenchTarget {
    let server = connection?.server ?? ProcessInfo.processInfo.environment["NATS_URL"]
    return try await BenchTarget.make(server: server) {
        guard let connection else { throw ValidationError("no connection options") }
        var configuration = connection.configuration()
        // Bench events do not belong in the event stream: BENCH/bench unless named.
        if !CommandLine.arguments.contains("--stream") { configuration.stream = "BENCH" }
        if !CommandLine.arguments.contains("--prefix") { configuration.subjectPrefix = "bench" }
        configuration.connectionName = "courier-bench"
        configuration.requestTimeout = .seconds(30)
        let provider = try await JetStreamProvider.connect(configuration)
        let info = try await provider.info()
        let description =
            "JetStream \(info.details["server"] ?? "?") at \(connection.resolvedServer), stream \(configuration.stream) "
            + "(\(info.details["storage"] ?? connection.storage), R\(info.details["replicas"] ?? "?"), "
            + "atomic batches \(info.details["atomicBatches"] ?? "off"))"
        return (JetStreamProviderBox(provider: provider), description, configuration.subjectPrefix)
    }
}
#else
func benchTarget(_ connection: Never?) async throws -> BenchTarget {
    try await BenchTarget.make(server: nil) { throw ValidationError("this build has no NATS trait") }
}
#endif
