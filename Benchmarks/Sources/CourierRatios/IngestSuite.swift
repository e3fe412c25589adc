import CNATSBaseline
import Courier
import Foundation
import Synchronization

/// `ingestRaw` into `NoopAdapter` with 1 and 2 producer threads. The baseline copies the same
/// pre-built `RawEvent`s into a preallocated array on one thread: the cost of touching each
/// event once, with no hashing, no sharing and no second thread.
func ingestPairs() throws -> [Pair] {
    let count = 4_000_000
    let events = (0..<1024).map { i in
        RawEvent(subject: "events.market.s\(i % 97)", bytes: Array(repeating: UInt8(ascii: "x"), count: 128))
    }
    func baseline() -> Double {
        var sink: [RawEvent] = []
        sink.reserveCapacity(65_536)
        let started = ContinuousClock.now
        for n in 0..<count {
            if sink.count == 65_536 { sink.removeAll(keepingCapacity: true) }
            sink.append(events[n & 1023])
        }
        let rate = rate(count, ContinuousClock.now - started)
        precondition(sink.count > 0)
        return rate
    }
    func ingest(producers: Int) throws -> Double {
        let bus = try IngestBus(
            configuration: .init(shards: 2, backpressure: .block(timeout: .seconds(10)), adapter: NoopAdapter())
        )
        let perProducer = count / producers
        let started = ContinuousClock.now
        try runThreads(producers) { producer in
            for n in 0..<perProducer { try bus.ingestRaw(events[(n &+ producer &* 512) & 1023]) }
        }
        let blocking = semaphoreRun { await bus.shutdown() }
        let elapsed = ContinuousClock.now - started
        guard blocking.eventsDispatched == UInt64(perProducer * producers), blocking.eventsDropped == 0 else {
            throw CourierError(.deliveryFailed, "ingest benchmark lost events: \(blocking)")
        }
        return rate(perProducer * producers, elapsed)
    }
    return [1, 2].map { producers in
        Pair(
            name: "ingestRaw → NoopAdapter, \(producers) producer thread\(producers == 1 ? "" : "s") (events/s)",
            baseline: "copy the same events into an array, 1 thread",
            courier: "IngestBus.ingestRaw, 2 shards, .block, drained",
            target: nil,
            measureBaseline: { baseline() },
            measureCourier: { try ingest(producers: producers) }
        )
    }
}

/// Runs `body(index)` on `count` new threads and waits for all; rethrows the first error.
func runThreads(_ count: Int, _ body: @escaping @Sendable (Int) throws -> Void) throws {
    let errors = ErrorBox()
    let done = DispatchGroup()
    for index in 0..<count {
        done.enter()
        Thread.detachNewThread {
            do { try body(index) } catch { errors.errors.withLock { $0.append(error) } }
            done.leave()
        }
    }
    done.wait()
    if let error = errors.errors.withLock({ $0.first }) { throw error }
}

/// Errors collected from threads.
final class ErrorBox: Sendable {
    let errors = Mutex<[any Error]>([])
}

/// A value handed from a task to a waiting thread.
final class ResultBox<T: Sendable>: Sendable {
    let value = Mutex<T?>(nil)
}

/// Runs async `body` from synchronous code and returns its result.
func semaphoreRun<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
    let result = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    Task {
        let value = await body()
        result.value.withLock { $0 = value }
        done.signal()
    }
    done.wait()
    return result.value.withLock { $0! }
}

/// Ingest → `JetStreamAdapter` end to end (ingested, batched, published pipelined, every ack
/// received) against raw cnats `js_PublishAsync` of the same bytes with the same window.
func ingestJetStreamPairs(url: String) -> [Pair] {
    let count = 100_000
    let window = 4096
    let stream = "BENCH_INGEST"
    let prefix = "benchingest"
    let payload: JSONValue = ["data": .string(String(repeating: "x", count: 118))]
    func reset() { precondition(cb_reset_stream(url, stream, "\(prefix).>", 0) == 0, "cannot reset stream") }
    let wire = Event(subject: "\(prefix).market.fx", category: "market", payload: payload).wireJSON()
    /// Raw cnats `js_PublishAsync` of the same bytes with the same window, per message.
    let perMessageBaseline: () async throws -> Double = {
        reset()
        let elapsed = wire.withUnsafeBytes {
            cb_async_publish(
                url, "\(prefix).market.fx", $0.baseAddress, Int32($0.count), Int32(count), Int32(window), 1)
        }
        precondition(elapsed > 0, "baseline failed")
        return Double(count) / elapsed
    }
    // One subject: every event hashes to the same shard, whose worker sends a batch and waits
    // for its acknowledgements before the next. Sixteen subjects: both shards publish.
    let variants: [(atomic: Bool, subjects: Int)] = [(true, 1), (false, 1), (false, 16)]
    var pairs = variants.map { atomic, subjects in
        Pair(
            name:
                "ingest → JetStreamAdapter, memory storage, \(atomic ? "atomic batches on 2.12+" : "per message")\(subjects > 1 ? ", \(subjects) subjects" : "") (events/s)",
            baseline: "cnats js_PublishAsync, window \(window)",
            courier:
                "IngestBus.ingestRaw → JetStreamAdapter, 2 shards, shut down, atomicBatchPublish \(atomic), \(subjects) subject\(subjects > 1 ? "s" : "")",
            // Issue 15: ≥ 1× per message, ≥ 2× with atomic batches on a 2.12+ server.
            target: subjects > 1 ? nil : atomic ? 2.0 : 1.0,
            measureBaseline: perMessageBaseline,
            measureCourier: {
                // No stream: Courier creates it as a service would (allow_atomic on 2.12+).
                precondition(cb_delete_stream(url, stream) == 0, "cannot delete stream")
                var configuration = JetStreamProvider.Configuration(url: url)
                configuration.stream = stream
                configuration.subjectPrefix = prefix
                configuration.storage = .memory
                configuration.publishWindow = window
                configuration.requestTimeout = .seconds(30)
                configuration.atomicBatchPublish = atomic
                let provider = try await JetStreamProvider.connect(configuration)
                let events = (0..<count).map { index in
                    let subject = subjects > 1 ? "\(prefix).market.s\(index % subjects)" : "\(prefix).market.fx"
                    return RawEvent(Event(subject: subject, category: "market", payload: payload))
                }
                let bus = try IngestBus(
                    configuration: .init(
                        shards: 2, backpressure: .block(timeout: .seconds(60)),
                        adapter: JetStreamAdapter(provider: provider))
                )
                let started = ContinuousClock.now
                for event in events { try bus.ingestRaw(event) }
                let stats = await bus.shutdown(deadline: .seconds(120))
                let elapsed = ContinuousClock.now - started
                precondition(stats.eventsDispatched == UInt64(count), "lost events: \(stats)")
                if let details = try? await provider.info().details {
                    log(
                        "  atomic batches \(details["atomicBatches"] ?? "-"): \(details["atomicBatchCommits"] ?? "-") committed, \(details["atomicBatchFallbacks"] ?? "-") per message"
                    )
                }
                await provider.shutdown()
                return rate(count, elapsed)
            }
        )
    }
    // What atomic batches can give at best on this server, in C: only where the server knows them.
    let atomicStream = "BENCH_ATOMIC"
    let atomicSubject = "benchatomic.market.fx"
    func resetAtomic() -> Bool { cb_reset_atomic_stream(url, atomicStream, "benchatomic.>", 0) == 0 }
    guard resetAtomic() else { return pairs }
    func atomicBaseline(window: Int32) -> Double {
        precondition(resetAtomic(), "cannot reset the atomic stream")
        let elapsed = wire.withUnsafeBytes {
            cb_atomic_publish(url, atomicSubject, $0.baseAddress, Int32($0.count), Int32(count), 1000, window, 1)
        }
        precondition(elapsed > 0, "atomic baseline failed (\(elapsed))")
        return Double(count) / elapsed
    }
    pairs.append(
        Pair(
            name: "raw cnats (C): atomic batches of 1 000 with message ids, 4 in flight, against per message",
            baseline: "cnats js_PublishAsync, window \(window)",
            courier: "C, not Courier: core publishes with Nats-Batch-* headers, one reply per batch",
            target: nil,
            measureBaseline: perMessageBaseline,
            measureCourier: { atomicBaseline(window: 4) }
        ))
    // What fast-ingest batches (2.14) can give at best on this server, in C.
    let fastStream = "BENCH_FAST"
    let fastSubject = "benchfast.market.fx"
    func resetFast() -> Bool { cb_reset_batched_stream(url, fastStream, "benchfast.>", 0) == 0 }
    guard resetFast() else { return pairs }
    for flow in [100, 500, 2000] {
        pairs.append(
            Pair(
                name:
                    "raw cnats (C): one fast-ingest batch with message ids, flow ack every \(flow), 2 owed, against per message",
                baseline: "cnats js_PublishAsync, window \(window)",
                courier:
                    "C, not Courier: core publishes with the batch state in the reply subject, one flow ack per \(flow)",
                target: nil,
                measureBaseline: perMessageBaseline,
                measureCourier: {
                    precondition(resetFast(), "cannot reset the fast-ingest stream")
                    let elapsed = wire.withUnsafeBytes {
                        cb_fast_publish(
                            url, fastSubject, $0.baseAddress, Int32($0.count), Int32(count), Int32(flow), 2, 1)
                    }
                    precondition(elapsed > 0, "fast-ingest baseline failed (\(elapsed))")
                    return Double(count) / elapsed
                }
            ))
    }
    return pairs
}
