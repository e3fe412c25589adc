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

struct BenchPubCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pub",
        abstract: "Publish --msgs events and report messages/s, MB/s and publish latency percentiles.",
        discussion: """
            Runs against the embedded provider, or JetStream with --server (stream BENCH, prefix \
            bench unless --stream/--prefix say otherwise; storage and replicas as --storage and \
            --replicas). A progress bar goes to standard error.
            """
    )
    @OptionGroup var global: GlobalOptions
    @OptionGroup var load: BenchLoadOptions
    #if NATS
    @OptionGroup(title: "Connection (JetStream; without --server the embedded provider is used)")
    var connection: ConnectionOptions
    #endif

    func run() async throws {
        global.bootstrapLogging()
        try await runBench(kind: .pub, load: load, target: try await benchTarget(connectionFor()))
    }

    #if NATS
    private func connectionFor() -> ConnectionOptions? { connection }
    #else
    private func connectionFor() -> Never? { nil }
    #endif
}

struct BenchSubCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sub",
        abstract: "Consume --msgs events with manual acks on --subs durable consumers and report the rate.",
        discussion: """
            The events are published first (not timed, with publishBatch) under a subject of this run \
            alone; then every subscriber reads all of them from its own durable consumer and \
            acknowledges each one.
            """
    )
    @OptionGroup var global: GlobalOptions
    @OptionGroup var load: BenchLoadOptions
    #if NATS
    @OptionGroup(title: "Connection (JetStream; without --server the embedded provider is used)")
    var connection: ConnectionOptions
    #endif

    func run() async throws {
        global.bootstrapLogging()
        try await runBench(kind: .sub, load: load, target: try await benchTarget(connectionFor()))
    }

    #if NATS
    private func connectionFor() -> ConnectionOptions? { connection }
    #else
    private func connectionFor() -> Never? { nil }
    #endif
}

struct BenchPubSubCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pubsub",
        abstract: "Publish and consume at once: --pubs publishers, --subs durable consumers with manual acks.",
        discussion: """
            Subscribers start first, on durable consumers of this run's subject; the run ends when \
            every subscriber received every event.
            """
    )
    @OptionGroup var global: GlobalOptions
    @OptionGroup var load: BenchLoadOptions
    #if NATS
    @OptionGroup(title: "Connection (JetStream; without --server the embedded provider is used)")
    var connection: ConnectionOptions
    #endif

    func run() async throws {
        global.bootstrapLogging()
        try await runBench(kind: .pubsub, load: load, target: try await benchTarget(connectionFor()))
    }

    #if NATS
    private func connectionFor() -> ConnectionOptions? { connection }
    #else
    private func connectionFor() -> Never? { nil }
    #endif
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

// MARK: - The run

enum BenchKind: String {
    case pub, sub, pubsub
}

/// Counts shared by the workers and the progress bar.
final class BenchCounters: Sendable {
    let published = Atomic<Int>(0)
    let received = Atomic<Int>(0)
}

/// Latencies of one worker, in nanoseconds.
struct LatencyRecorder {
    var histogram = Histogram<UInt64>(highestTrackableValue: 600_000_000_000, numberOfSignificantValueDigits: .three)

    mutating func record(_ duration: Duration) {
        let nanos = duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
        _ = histogram.record(UInt64(max(1, nanos)))
    }
}

func runBench(kind: BenchKind, load: BenchLoadOptions, target: BenchTarget) async throws {
    let provider = target.provider
    let run = String(UInt32.random(in: 0...UInt32.max), radix: 16)
    let subject = "\(target.prefix).bench.r\(run)"
    let counters = BenchCounters()
    let payload: JSONValue = ["data": .string(String(repeating: "x", count: load.size))]
    let template = Event(subject: subject, category: "bench", payload: payload)
    let wireBytes = template.wireJSON().count
    let events: @Sendable (Int) -> [Event] = { count in
        (0..<count).map { _ in Event(subject: subject, category: "bench", payload: payload) }
    }

    if kind == .sub {
        // Prefill, untimed.
        var left = load.msgs
        while left > 0 {
            let chunk = events(min(left, 10_000))
            for result in await provider.publishBatch(chunk, timeout: .seconds(120)) { _ = try result.get() }
            left -= chunk.count
        }
    }
    let consumers = (0..<load.subs).map { "bench-\(run)-\($0)" }
    var opened: [EventSubscription] = []
    if kind != .pub {
        for name in consumers {
            opened.append(
                try await provider.subscribeDurable(
                    consumer: name, filter: subject,
                    options: SubscribeOptions(maxAckPending: 4096, ackWait: .seconds(60), deliverPolicy: .all)))
        }
    }
    let subscriptions = opened
    let expectedReceived = kind == .pub ? 0 : load.msgs * load.subs
    let progress = BenchProgress(
        kind: kind, total: load.msgs, received: expectedReceived, counters: counters, enabled: !load.quiet)
    progress.start()
    let started = ContinuousClock.now
    let deadline = started + .seconds(3600)

    let watchdog = Task.detached {
        var last = -1
        var since = ContinuousClock.now
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            let now = counters.received.load(ordering: .relaxed) + counters.published.load(ordering: .relaxed)
            if now != last {
                last = now
                since = .now
            } else if ContinuousClock.now - since > .seconds(30) || ContinuousClock.now > deadline {
                for subscription in subscriptions { await subscription.close() }
                return
            }
        }
    }
    defer { watchdog.cancel() }
    async let subscribed: [Duration] = withThrowingTaskGroup(of: Duration.self) { group in
        for subscription in subscriptions {
            group.addTask {
                var received = 0
                while received < load.msgs {
                    // `next()` without a timeout of its own (which costs two tasks per call): the
                    // watchdog below closes the subscriptions when nothing arrives for 30 s.
                    guard let pending = try await subscription.next() else {
                        throw CourierError(
                            .timeout,
                            "a subscriber received \(received) of \(load.msgs) events: nothing arrived for 30 s or the run passed an hour",
                            isRetryable: true)
                    }
                    try await pending.ack()
                    received += 1
                    counters.received.add(1, ordering: .relaxed)
                }
                return ContinuousClock.now - started
            }
        }
        var durations: [Duration] = []
        for try await duration in group { durations.append(duration) }
        return durations
    }
    var latency = LatencyRecorder()
    var publishElapsed: Duration = .zero
    do {
        if kind != .sub {
            latency = try await publish(load: load, provider: provider, events: events, counters: counters)
            publishElapsed = ContinuousClock.now - started
        }
    } catch {
        await progress.stop()
        for subscription in subscriptions { await subscription.close() }
        throw error
    }
    let subscriberDurations = try await subscribed
    let elapsed = ContinuousClock.now - started
    await progress.stop()
    for subscription in subscriptions { await subscription.close() }
    for name in consumers where kind != .pub { try? await provider.unsubscribe(consumer: name) }
    await target.shutdown()

    let summary = BenchSummary(
        kind: kind, load: load, target: target.description, wireBytes: wireBytes,
        publishSeconds: kind == .sub ? nil : publishElapsed.seconds,
        subscribeSeconds: subscriberDurations.isEmpty ? nil : (subscriberDurations.max() ?? elapsed).seconds,
        latency: kind == .sub ? nil : latency.histogram, latencyUnit: latencyUnit(load))
    emit(load.json ? summary.json().description : summary.text())
}

/// What one recorded latency covers in `load.mode`.
func latencyUnit(_ load: BenchLoadOptions) -> String {
    switch load.mode {
    case "sync": "per publish (one event, acknowledged)"
    case "async": "per publishBatch call of \(load.batch) events"
    default: "per adapter batch (up to 1 000 events)"
    }
}

/// Publishes `load.msgs` events with `load.pubs` publishers in `load.mode`; returns the merged latencies.
func publish(
    load: BenchLoadOptions, provider: any EventProvider, events: @escaping @Sendable (Int) -> [Event],
    counters: BenchCounters
) async throws -> LatencyRecorder {
    if load.mode == "batch" {
        return try await publishThroughIngest(load: load, provider: provider, events: events, counters: counters)
    }
    return try await withThrowingTaskGroup(of: LatencyRecorder.self) { group in
        for publisher in 0..<load.pubs {
            let share = load.msgs / load.pubs + (publisher < load.msgs % load.pubs ? 1 : 0)
            group.addTask {
                var latency = LatencyRecorder()
                if load.mode == "sync" {
                    var batch: [Event] = []
                    var sent = 0
                    let body = {
                        while sent < share {
                            // Distinct events (the dedupe id is the event id), made 10 000 at a time.
                            if sent % 10_000 == 0 { batch = events(min(share - sent, 10_000)) }
                            let began = ContinuousClock.now
                            _ = try await provider.publish(batch[sent % 10_000], options: PublishOptions())
                            latency.record(ContinuousClock.now - began)
                            sent += 1
                            counters.published.add(1, ordering: .relaxed)
                        }
                    }
                    #if NATS
                    if let jetStream = provider as? JetStreamProvider {
                        try await withTaskExecutorPreference(jetStream.executor) { try await body() }
                        return latency
                    }
                    #endif
                    try await body()
                    return latency
                }
                // async: four publishBatch calls in flight, each timed.
                let chunks = stride(from: 0, to: share, by: load.batch).map { min(load.batch, share - $0) }
                try await withThrowingTaskGroup(of: Duration.self) { calls in
                    var next = 0
                    var inFlight = 0
                    while next < chunks.count || inFlight > 0 {
                        while next < chunks.count, inFlight < 4 {
                            let batch = events(chunks[next])
                            next += 1
                            inFlight += 1
                            calls.addTask {
                                let began = ContinuousClock.now
                                for result in await provider.publishBatch(batch, timeout: .seconds(120)) {
                                    _ = try result.get()
                                }
                                counters.published.add(batch.count, ordering: .relaxed)
                                return ContinuousClock.now - began
                            }
                        }
                        if let took = try await calls.next() {
                            latency.record(took)
                            inFlight -= 1
                        }
                    }
                }
                return latency
            }
        }
        var merged = LatencyRecorder()
        for try await latency in group { merged.histogram.add(latency.histogram) }
        return merged
    }
}

/// `--mode batch`: producer threads feed the ingest core, whose adapter (the JetStream adapter,
/// or the provider adapter for the embedded provider) publishes each batch; batches are timed.
func publishThroughIngest(
    load: BenchLoadOptions, provider: any EventProvider, events: @Sendable (Int) -> [Event], counters: BenchCounters
) async throws -> LatencyRecorder {
    let adapter: any Adapter
    #if NATS
    if let jetStream = provider as? JetStreamProvider {
        adapter = JetStreamAdapter(provider: jetStream)
    } else {
        adapter = ProviderAdapter(provider: provider, retention: 1)
    }
    #else
    adapter = ProviderAdapter(provider: provider, retention: 1)
    #endif
    let timing = TimingAdapter(adapter, counters: counters)
    let bus = try IngestBus(
        configuration: .init(ringCapacity: 65_536, backpressure: .block(timeout: .seconds(120)), adapter: timing))
    // Pre-serialised events (the ingest core's input); each gets its own dedupe id in its batch.
    let raw = events(min(load.msgs, 4096)).map { RawEvent($0) }
    let failures = FailureBox()
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let done = DispatchGroup()
        for producer in 0..<load.pubs {
            let share = load.msgs / load.pubs + (producer < load.msgs % load.pubs ? 1 : 0)
            done.enter()
            Thread.detachNewThread {
                for index in 0..<share {
                    do { try bus.ingestRaw(raw[index % raw.count]) } catch {
                        failures.record(error)
                        break
                    }
                }
                done.leave()
            }
        }
        Thread.detachNewThread {
            done.wait()
            continuation.resume()
        }
    }
    let stats = await bus.shutdown(deadline: .seconds(600))
    if let failure = failures.first { throw failure }
    guard stats.eventsDispatched == UInt64(load.msgs) else {
        throw CourierError(.deliveryFailed, "ingest dispatched \(stats.eventsDispatched) of \(load.msgs) events")
    }
    return timing.latency.withLock { $0 }
}

/// Times each batch its adapter takes.
final class TimingAdapter: Adapter {
    let inner: any Adapter
    let counters: BenchCounters
    let latency = Mutex(LatencyRecorder())

    init(_ inner: any Adapter, counters: BenchCounters) {
        self.inner = inner
        self.counters = counters
    }

    var name: String { inner.name }
    var needsTimeoutGuard: Bool { inner.needsTimeoutGuard }
    var subjectPrefix: String? { inner.subjectPrefix }
    var deadLetters: (any DlqHandler)? { inner.deadLetters }

    func onBatch(_ batch: Batch) async throws -> BatchResult {
        let began = ContinuousClock.now
        let result = try await inner.onBatch(batch)
        let took = ContinuousClock.now - began
        latency.withLock { $0.record(took) }
        counters.published.add(batch.events.count, ordering: .relaxed)
        return result
    }

    func pollShard(shard: Int, cursor: UInt64, limit: Int) async throws -> ShardPollResult {
        try await inner.pollShard(shard: shard, cursor: cursor, limit: limit)
    }

    func flush() async throws { try await inner.flush() }
    func shutdown() async { await inner.shutdown() }
}

// MARK: - Output

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

struct BenchSummary {
    let kind: BenchKind
    let load: BenchLoadOptions
    let target: String
    let wireBytes: Int
    let publishSeconds: Double?
    let subscribeSeconds: Double?
    let latency: Histogram<UInt64>?
    let latencyUnit: String

    static let percentiles: [(String, Double)] = [("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9)]

    var publishRate: Double? { publishSeconds.map { Double(load.msgs) / max($0, 1e-9) } }
    /// Messages received per second by all subscribers together.
    var subscribeRate: Double? { subscribeSeconds.map { Double(load.msgs * load.subs) / max($0, 1e-9) } }

    func text() -> String {
        var lines = [
            "\(kind.rawValue) against \(target): \(load.msgs) msgs of \(load.size) B payload (\(wireBytes) B events)"
        ]
        if let rate = publishRate, let seconds = publishSeconds {
            lines.append(
                String(
                    format: "Pub stats: %@ msgs/s ~ %.2f MB/s (%d publisher%@, mode %@, %.3f s)", grouped(rate),
                    rate * Double(wireBytes) / 1e6, load.pubs, load.pubs == 1 ? "" : "s", load.mode, seconds))
        }
        if let latency, latency.totalCount > 0 {
            let values = Self.percentiles.map { "\($0.0) \(formatNanos(latency.valueAtPercentile($0.1)))" }
            lines.append("  publish latency \(latencyUnit): " + values.joined(separator: ", "))
        }
        if let rate = subscribeRate, let seconds = subscribeSeconds {
            lines.append(
                String(
                    format: "Sub stats: %@ msgs/s ~ %.2f MB/s (%d subscriber%@ × %d msgs, manual ack, %.3f s)",
                    grouped(rate), rate * Double(wireBytes) / 1e6, load.subs, load.subs == 1 ? "" : "s", load.msgs,
                    seconds))
        }
        return lines.joined(separator: "\n")
    }

    func json() -> JSONValue {
        var object: [String: JSONValue] = [
            "kind": .string(kind.rawValue), "target": .string(target), "msgs": .int(Int64(load.msgs)),
            "size": .int(Int64(load.size)), "eventBytes": .int(Int64(wireBytes)), "pubs": .int(Int64(load.pubs)),
            "subs": .int(Int64(load.subs)), "mode": .string(load.mode),
        ]
        if let rate = publishRate, let seconds = publishSeconds {
            object["publish"] = [
                "seconds": .double(seconds), "msgsPerSecond": .double(rate.rounded()),
                "megabytesPerSecond": .double((rate * Double(wireBytes) / 1e4).rounded() / 100),
            ]
        }
        if let latency, latency.totalCount > 0 {
            var values: [String: JSONValue] = [
                "unit": .string(latencyUnit), "samples": .int(Int64(latency.totalCount)),
            ]
            for (name, percentile) in Self.percentiles {
                values[name + "Nanoseconds"] = .int(Int64(latency.valueAtPercentile(percentile)))
            }
            object["publishLatency"] = .object(values)
        }
        if let rate = subscribeRate, let seconds = subscribeSeconds {
            object["subscribe"] = [
                "seconds": .double(seconds), "msgsPerSecond": .double(rate.rounded()),
                "megabytesPerSecond": .double((rate * Double(wireBytes) / 1e4).rounded() / 100),
            ]
        }
        return .object(object)
    }
}

func grouped(_ value: Double) -> String {
    let digits = String(Int(value.rounded()))
    var out = ""
    for (index, character) in digits.enumerated() {
        if index > 0, (digits.count - index) % 3 == 0 { out.append(",") }
        out.append(character)
    }
    return out
}

func formatNanos(_ nanos: UInt64) -> String {
    switch nanos {
    case ..<10_000: String(format: "%.2f µs", Double(nanos) / 1e3)
    case ..<10_000_000: String(format: "%.0f µs", Double(nanos) / 1e3)
    default: String(format: "%.1f ms", Double(nanos) / 1e6)
    }
}

/// A live progress bar on standard error: published and received against the totals, and the rate.
final class BenchProgress: Sendable {
    private let kind: BenchKind
    private let total: Int
    private let received: Int
    private let counters: BenchCounters
    private let enabled: Bool
    private let task = Mutex<Task<Void, Never>?>(nil)

    init(kind: BenchKind, total: Int, received: Int, counters: BenchCounters, enabled: Bool) {
        self.kind = kind
        self.total = total
        self.received = received
        self.counters = counters
        self.enabled = enabled
    }

    func start() {
        guard enabled else { return }
        let started = ContinuousClock.now
        let running = Task.detached { [kind, total, received, counters] in
            var last = false
            while !last {
                try? await Task.sleep(for: .milliseconds(200))
                last = Task.isCancelled  // one more line with the final counts, then stop
                let seconds = max((ContinuousClock.now - started).seconds, 0.001)
                let published = counters.published.load(ordering: .relaxed)
                let got = counters.received.load(ordering: .relaxed)
                let done = (kind == .sub ? 0 : published) + got
                let whole = (kind == .sub ? 0 : total) + received
                let fraction = whole > 0 ? min(1, Double(done) / Double(whole)) : 1
                let width = 30
                let filled = Int(fraction * Double(width))
                let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
                var line = String(format: "\r[%@] %3.0f%% ", bar, fraction * 100)
                if kind != .sub { line += "pub \(published)/\(total) \(grouped(Double(published) / seconds))/s " }
                if kind != .pub { line += "sub \(got)/\(received) \(grouped(Double(got) / seconds))/s " }
                FileHandle.standardError.write(Data(line.utf8))
            }
        }
        task.withLock { $0 = running }
    }

    /// Stops the bar and ends its line once it wrote its last update.
    func stop() async {
        guard enabled, let running = task.withLock({ $0 }) else { return }
        running.cancel()
        await running.value
        FileHandle.standardError.write(Data("\n".utf8))
    }
}
