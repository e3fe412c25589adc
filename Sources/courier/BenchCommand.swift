import ArgumentParser
import Courier
import Foundation
import Synchronization

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure Courier on this machine.",
        subcommands: [IngestBenchCommand.self, BenchPubCommand.self, BenchSubCommand.self, BenchPubSubCommand.self]
    )
}

struct IngestBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Ingest pre-serialised events through the sharded ingest core and report the rate.",
        discussion: """
            Producer threads call ingestRaw with pre-built events; the run ends when every event was \
            handed to the adapter (the bus is shut down and drained). A progress line goes to \
            standard error; --json prints one result object on standard output.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(name: .long, help: "Events to ingest.")
    var count: Int = 1_000_000

    @Option(name: .long, help: "Payload bytes per event.")
    var size: Int = 128

    @Option(name: .long, help: "Shards (default: the processor count).")
    var shards: Int?

    @Option(name: .long, help: "Producer threads.")
    var producers: Int = 1

    @Option(name: .long, help: "Adapter: noop, memory or jetstream.")
    var adapter: String = "noop"

    @Option(name: .long, help: "Backpressure: block, drop-newest, drop-oldest, fail-producer or sample.")
    var backpressure: String = "block"

    @Flag(
        name: .long,
        help: """
            Give every event bytes of its own, as a real producer's are, instead of reusing 4 096 \
            pre-built ones: with --adapter memory the resident bytes per event then measure what the \
            provider retains.
            """)
    var copyBytes = false

    @Flag(name: .long, help: "Print one JSON object: events, seconds, eventsPerSecond, dropped, …")
    var json = false

    #if NATS
    @OptionGroup(title: "Connection (--adapter jetstream)") var connection: ConnectionOptions
    #endif

    func validate() throws {
        guard count >= 1 else { throw ValidationError("--count must be at least 1") }
        guard size >= 0, size <= 1 << 20 else { throw ValidationError("--size must be 0…1048576") }
        guard producers >= 1, producers <= 64 else { throw ValidationError("--producers must be 1…64") }
        if let shards, shards < 1 { throw ValidationError("--shards must be at least 1") }
        guard ["noop", "memory", "jetstream"].contains(adapter) else {
            throw ValidationError("--adapter must be noop, memory or jetstream, got '\(adapter)'")
        }
        _ = try backpressureMode()
    }

    private func backpressureMode() throws -> IngestBus.Backpressure {
        switch backpressure {
        case "block": .block(timeout: .seconds(60))
        case "drop-newest": .dropNewest
        case "drop-oldest": .dropOldest
        case "fail-producer": .failProducer
        case "sample": .sample(rate: 0.1)
        default: throw ValidationError("unknown --backpressure '\(backpressure)'")
        }
    }

    func run() async throws {
        global.bootstrapLogging()
        let (ingestAdapter, cleanUp) = try await makeAdapter()
        let bus = try IngestBus(
            configuration: .init(
                shards: shards,
                ringCapacity: 65_536,
                backpressure: try backpressureMode(),
                adapter: ingestAdapter
            )
        )
        // Pre-built events: the hot path is measured, not event construction.
        let distinct = min(count, 4096)
        #if NATS
        let prefix = adapter == "jetstream" ? connection.prefix : Subjects.defaultPrefix
        #else
        let prefix = Subjects.defaultPrefix
        #endif
        let events: [RawEvent] =
            if adapter == "noop" {
                (0..<distinct).map {
                    RawEvent(
                        subject: "\(prefix).bench.s\($0 % 64)", bytes: Array(repeating: UInt8(ascii: "x"), count: size))
                }
            } else {
                (0..<distinct).map { i in
                    RawEvent(
                        Event(
                            subject: "\(prefix).bench.s\(i % 64)",
                            category: "bench",
                            payload: ["data": .string(String(repeating: "x", count: max(0, size - 10)))]
                        )
                    )
                }
            }
        let copies = copyBytes
        let residentBefore = ResidentMemory.current()
        let refused = FailureBox()
        let progress = ProgressLine(total: count, bus: bus, enabled: true)
        progress.start()
        let started = ContinuousClock.now
        let perProducer = count / producers
        let remainder = count % producers
        let done = DispatchGroup()
        let failures = FailureBox()
        for producer in 0..<producers {
            let share = perProducer + (producer < remainder ? 1 : 0)
            done.enter()
            Thread.detachNewThread {
                var index = producer
                for _ in 0..<share {
                    do {
                        let template = events[index % distinct]
                        try bus.ingestRaw(
                            copies
                                ? RawEvent(
                                    subject: template.subject,
                                    bytes: template.bytes.withUnsafeBufferPointer { Array($0) },
                                    hash: template.hash, timestamp: template.timestamp)
                                : template)
                    } catch let error as CourierError where error.code == .backpressure {
                        refused.countRefusal()
                    } catch {
                        failures.record(error)
                        break
                    }
                    index += producers
                }
                done.leave()
            }
        }
        // Waited for on a thread of its own: a blocked Dispatch thread is one of the pool's two
        // (on two cores) that every task of the process runs on.
        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                done.wait()
                continuation.resume()
            }
        }
        let stats = await bus.shutdown(deadline: .seconds(300))
        let elapsed = ContinuousClock.now - started
        progress.stop()
        await cleanUp()
        if let failure = failures.first { throw failure }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let rate = Double(stats.eventsDispatched + stats.eventsDropped) / seconds
        // Resident bytes per retained event: the process's peak resident memory above where it
        // started, over the events the provider still holds (its byte and count limits may have
        // dropped the oldest), against the event's wire size.
        let peak = ResidentMemory.peak()
        let wireBytes = events[0].bytes.count
        let retained =
            (try? await (ingestAdapter as? ProviderAdapter)?.provider.info().messages).flatMap { $0 }
            ?? stats.eventsDispatched
        let perEvent = retained > 0 ? Double(max(0, peak - residentBefore)) / Double(retained) : 0
        if json {
            let result: JSONValue = [
                "events": .int(Int64(stats.eventsIngested)),
                "dispatched": .int(Int64(stats.eventsDispatched)),
                "dropped": .int(Int64(stats.eventsDropped)),
                "rejected": .int(Int64(stats.eventsRejected)),
                "batches": .int(Int64(stats.batchesDispatched)),
                "seconds": .double(seconds),
                "eventsPerSecond": .double(rate.rounded()),
                "shards": .int(Int64(stats.shards)),
                "producers": .int(Int64(producers)),
                "adapter": .string(ingestAdapter.name),
                "backpressure": .string(backpressure),
                "size": .int(Int64(size)),
                "wireBytesPerEvent": .int(Int64(wireBytes)),
                "peakResidentBytes": .int(Int64(peak)),
                "residentBytesPerEvent": .double(perEvent.rounded()),
            ]
            emit(result.description)
        } else {
            emit(
                String(
                    format:
                        "%d events in %.3f s: %.2f M events/s (%@, %d shards, %d producers), dropped %d, refused %d",
                    Int(stats.eventsIngested), seconds, rate / 1e6, ingestAdapter.name, stats.shards, producers,
                    Int(stats.eventsDropped), Int(stats.eventsRejected)
                )
            )
            if adapter == "memory" {
                emit(
                    String(
                        format:
                            "peak resident %.0f MB: %.0f bytes per retained event (%d retained) of %d wire bytes (%.2f×)%@",
                        Double(peak) / 1e6, perEvent, Int(retained), wireBytes, perEvent / Double(wireBytes),
                        copies ? "" : "; events share 4 096 pre-built byte arrays, --copy-bytes gives each its own"))
            }
        }
    }

    private func makeAdapter() async throws -> (any Adapter, @Sendable () async -> Void) {
        switch adapter {
        case "memory":
            var configuration = MemoryProvider.Configuration()
            configuration.maxEvents = count + 1
            return (ProviderAdapter(provider: MemoryProvider(configuration: configuration), retention: 1), {})
        case "jetstream":
            #if NATS
            var configuration = connection.configuration()
            configuration.connectionName = "courier-bench"
            let provider = try await JetStreamProvider.connect(configuration)
            return (JetStreamAdapter(provider: provider), { await provider.shutdown() })
            #else
            throw ValidationError("this build has no NATS trait: --adapter jetstream is unavailable")
            #endif
        default:
            return (NoopAdapter(), {})
        }
    }
}

/// The first error a producer thread hit, and how many events were refused.
final class FailureBox: Sendable {
    private let errors = Mutex<[any Error]>([])
    private let refusals = Atomic<Int>(0)
    func countRefusal() { refusals.add(1, ordering: .relaxed) }
    func record(_ error: any Error) { errors.withLock { $0.append(error) } }
    var first: (any Error)? { errors.withLock { $0.first } }
}

/// A live `\r`-updated progress line on standard error.
final class ProgressLine: Sendable {
    private let total: Int
    private let bus: IngestBus
    private let enabled: Bool
    private let task = Mutex<Task<Void, Never>?>(nil)

    init(total: Int, bus: IngestBus, enabled: Bool) {
        self.total = total
        self.bus = bus
        self.enabled = enabled
    }

    func start() {
        guard enabled else { return }
        let started = ContinuousClock.now
        let running = Task.detached { [total, bus] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(250))
                let stats = bus.stats
                let elapsed = ContinuousClock.now - started
                let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                let line = String(
                    format: "\r  %.2fM / %.2fM ingested, %.2fM dispatched, %.2f M/s, dropped %d   ",
                    Double(stats.eventsIngested) / 1e6, Double(total) / 1e6, Double(stats.eventsDispatched) / 1e6,
                    Double(stats.eventsDispatched) / max(seconds, 0.001) / 1e6, Int(stats.eventsDropped)
                )
                FileHandle.standardError.write(Data(line.utf8))
            }
        }
        task.withLock { $0 = running }
    }

    func stop() {
        guard enabled else { return }
        task.withLock { $0?.cancel() }
        FileHandle.standardError.write(Data("\n".utf8))
    }
}

/// The process's resident memory, from `/proc/self/status` (0 where it cannot be read).
enum ResidentMemory {
    /// Resident bytes now (`VmRSS`).
    static func current() -> Int { field("VmRSS:") }
    /// The most resident bytes so far (`VmHWM`).
    static func peak() -> Int { field("VmHWM:") }

    private static func field(_ name: String) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix(name) {
            let kilobytes =
                line.dropFirst(name.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first.flatMap { Int($0) }
                ?? 0
            return kilobytes * 1024
        }
        return 0
    }
}
