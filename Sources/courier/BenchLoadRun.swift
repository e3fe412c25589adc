import ArgumentParser
import Courier
import Foundation
import Histogram
import Synchronization

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
