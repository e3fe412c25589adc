import CourierCore
import CourierIngest
import CourierTesting
import Foundation
import Logging
import Synchronization
import Testing

/// Runs `count` producers, each on a thread of its own, and returns their results in order.
/// Producers spin and, under `.block`, wait; on Swift's cooperative pool (one thread per core)
/// that would stall every other test running in the process.
func onProducerThreads<T: Sendable>(_ count: Int, _ body: @escaping @Sendable (Int) -> T) async -> [T] {
    await withTaskGroup(of: (Int, T).self) { group in
        for index in 0..<count {
            group.addTask { (index, try! await offPool { body(index) }) }
        }
        var results = [T?](repeating: nil, count: count)
        for await (index, result) in group { results[index] = result }
        return results.map { $0! }
    }
}

/// An adapter that records what it took, optionally slowly, failing on demand.
final class RecordingAdapter: Adapter {
    struct Plan: Sendable {
        var delay: Duration? = nil
        /// Calls to fail with a retryable error before succeeding.
        var transientFailures = 0
        /// Batches (by sequenceStart on shard 0) to fail fatally.
        var fatalOnFirstBatchOfShard: Int? = nil
    }

    private let plan: Plan
    private let state = Mutex<(batches: [Batch], attempts: [String], transientLeft: Int, fatalDone: Bool)>(
        ([], [], 0, false))
    private let closed = Atomic<Bool>(false)

    init(_ plan: Plan = Plan()) {
        self.plan = plan
        state.withLock { $0.transientLeft = plan.transientFailures }
    }

    var name: String { "recording" }

    func onBatch(_ batch: Batch) async throws -> BatchResult {
        guard !closed.load(ordering: .relaxed) else { throw CourierError(.shutdown, "recording adapter shut down") }
        if let delay = plan.delay { try await Task.sleep(for: delay) }
        enum Decision { case transient, fatal, take }
        let decision = state.withLock { state -> Decision in
            state.attempts.append(batch.dedupeID(at: 0))
            if state.transientLeft > 0 {
                state.transientLeft -= 1
                return .transient
            }
            if let shard = plan.fatalOnFirstBatchOfShard, batch.shardID == shard, !state.fatalDone {
                state.fatalDone = true
                return .fatal
            }
            state.batches.append(batch)
            return .take
        }
        switch decision {
        case .transient: throw CourierError(.transient, "store briefly unavailable", isRetryable: true)
        case .fatal: throw CourierError(.fatal, "batch refused for good")
        case .take: return .stored
        }
    }

    func pollShard(shard: Int, cursor: UInt64, limit: Int) async throws -> ShardPollResult {
        ShardPollResult(events: [], cursor: cursor, hasMore: false)
    }

    func flush() async throws {}
    func shutdown() async { closed.store(true, ordering: .relaxed) }

    var batches: [Batch] { state.withLock { $0.batches } }
    var attempts: [String] { state.withLock { $0.attempts } }
    var events: [RawEvent] { batches.flatMap(\.events) }
}

/// Events `p:i` from producer p, on subject `events.load.s<i % subjects>`.
func loadEvent(producer: Int, index: Int, subjects: Int) -> RawEvent {
    RawEvent(subject: "events.load.s\(index % subjects)", bytes: Array("\(producer):\(index)".utf8))
}

/// Checks that, per subject and producer, events reached the adapter in ingest order and at
/// most once; returns how many distinct events arrived.
func checkOrder(_ events: [RawEvent], sourceLocation: SourceLocation = #_sourceLocation) -> Int {
    var last: [String: Int] = [:]
    var seen = Set<String>()
    for event in events {
        let text = String(decoding: event.bytes, as: UTF8.self)
        let parts = text.split(separator: ":")
        let key = "\(event.subject)|\(parts[0])"
        let index = Int(parts[1])!
        #expect(seen.insert(text).inserted, "\(text) arrived twice", sourceLocation: sourceLocation)
        if let previous = last[key] {
            #expect(index > previous, "\(key): \(index) after \(previous)", sourceLocation: sourceLocation)
        }
        last[key] = index
    }
    return seen.count
}

/// An atomic counter with a stable address, shareable between tasks.
final class AtomicCounter: Sendable {
    let value: Atomic<Int>
    init(_ initial: Int = 0) { value = Atomic(initial) }
}

/// Sizes of batches reported dropped.
final class ReportedBatches: Sendable {
    let sizes = Mutex<[Int]>([])
}

let quietIngestLogger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

@Suite("Ingest core", .serialized)
struct IngestTests {
    @Test("xxHash64 matches the reference implementation")
    func xxHashVectors() {
        let vectors: [(String, UInt64, UInt64)] = [
            ("", 0xEF46_DB37_51D8_E999, 0x98B1_582B_0977_E704),
            ("a", 0xD24E_C4F1_A98C_6E5B, 0x88E4_FE59_ADF7_B0CC),
            ("abc", 0x44BC_2CF5_AD77_0999, 0x13C1_D910_7027_70E6),
            ("events.orders.created", 0xC4F7_DAAF_6D1E_9AE9, 0x2D73_90E0_FF83_147F),
            ("events.market.forex.eurusd.tick.0000123", 0x6B11_452E_14F0_D51F, 0x8AE3_E1D6_4C9B_3CE0),
        ]
        for (text, seed0, seed42) in vectors {
            #expect(XXHash64.hash(text) == seed0, "\(text)")
            #expect(XXHash64.hash(text, seed: 42) == seed42, "\(text)")
        }
        #expect(XXHash64.hash((0..<100).map { UInt8($0) }) == 0x6AC1_E580_3216_6597)
        #expect(RawEvent(subject: "abc", bytes: []).hash == 0x44BC_2CF5_AD77_0999)
    }

    @Test("Several producers: every event dispatched once, per-subject order kept, stats add up")
    func producersNoLoss() async throws {
        let adapter = RecordingAdapter()
        let bus = try IngestBus(
            configuration: .init(shards: 3, ringCapacity: 1024, adapter: adapter, logger: quietIngestLogger))
        let producers = 4, perProducer = 25_000
        _ = await onProducerThreads(producers) { producer in
            for index in 0..<perProducer {
                _ = try? bus.ingestRaw(loadEvent(producer: producer, index: index, subjects: 50))
            }
        }
        let stats = await bus.shutdown()
        #expect(stats.eventsIngested == UInt64(producers * perProducer))
        #expect(stats.eventsDispatched == stats.eventsIngested)
        #expect(stats.eventsDropped == 0 && stats.eventsRejected == 0 && !stats.shutdownWasLossy)
        #expect(checkOrder(adapter.events) == producers * perProducer)
        // Same subject, same shard; batches carry consecutive sequences per shard.
        var shardOf: [String: Int] = [:]
        var nextSequence: [Int: UInt64] = [:]
        for batch in adapter.batches {
            #expect(batch.producerNonce == bus.producerNonce)
            #expect(batch.events.count <= 1024)
            #expect(batch.sequenceStart == nextSequence[batch.shardID, default: 0])
            nextSequence[batch.shardID] = batch.sequenceStart + UInt64(batch.events.count)
            for event in batch.events {
                #expect(shardOf[event.subject, default: batch.shardID] == batch.shardID)
                shardOf[event.subject] = batch.shardID
            }
        }
        let id = adapter.batches[0].dedupeID(at: 2)
        #expect(
            id
                == "\(Hex.encode64(bus.producerNonce)):\(adapter.batches[0].shardID):\(adapter.batches[0].sequenceStart):2"
        )
    }

    static let modes: [IngestBus.Backpressure] = [
        .dropNewest, .dropOldest, .failProducer, .block(timeout: .milliseconds(20)), .sample(rate: 0.25),
    ]

    @Test("Every backpressure mode under pressure: counted drops, order kept, invariant holds", arguments: modes)
    func backpressureModes(mode: IngestBus.Backpressure) async throws {
        let adapter = RecordingAdapter(.init(delay: .milliseconds(2)))
        let bus = try IngestBus(
            configuration: .init(
                shards: 2,
                ringCapacity: 64,
                batch: .init(maxEvents: 16, maxDelay: .milliseconds(1)),
                backpressure: mode,
                adapter: adapter,
                logger: quietIngestLogger
            )
        )
        let producers = 3, perProducer = 4_000
        let thrownDrops = AtomicCounter()
        let refusals = AtomicCounter()
        _ = await onProducerThreads(producers) { producer in
            for index in 0..<perProducer {
                do {
                    try bus.ingestRaw(loadEvent(producer: producer, index: index, subjects: 7))
                } catch let error as CourierError where error.code == .backpressure {
                    if error.isRetryable {
                        refusals.value.add(1, ordering: .relaxed)
                    } else {
                        thrownDrops.value.add(1, ordering: .relaxed)
                    }
                } catch {
                    Issue.record("unexpected \(error)")
                }
            }
        }
        let stats = await bus.shutdown()
        let offered = UInt64(producers * perProducer)
        #expect(stats.eventsIngested + stats.eventsRejected == offered, "\(stats)")
        #expect(stats.eventsDispatched + stats.eventsDropped == stats.eventsIngested, "\(stats)")
        #expect(stats.eventsDispatched == UInt64(adapter.events.count))
        #expect(checkOrder(adapter.events) == adapter.events.count)
        #expect(!stats.shutdownWasLossy)
        if mode == .dropNewest {
            #expect(stats.eventsDropped > 0, "the slow adapter forced drops")
            #expect(UInt64(thrownDrops.value.load(ordering: .relaxed)) == stats.eventsDropped, "each drop was reported")
            #expect(stats.eventsRejected == 0)
        } else if mode == .dropOldest || mode == .sample(rate: 0.25) {
            // Evictions drop older events (their producers already returned); an event dropped on
            // arrival is reported to its own producer.
            #expect(stats.eventsDropped > 0 && stats.eventsRejected == 0)
            #expect(UInt64(thrownDrops.value.load(ordering: .relaxed)) <= stats.eventsDropped)
            if mode != .dropOldest { #expect(thrownDrops.value.load(ordering: .relaxed) > 0) }
        } else if mode == .failProducer {
            #expect(stats.eventsRejected > 0 && stats.eventsDropped == 0)
            #expect(UInt64(refusals.value.load(ordering: .relaxed)) == stats.eventsRejected)
        } else {  // block
            #expect(stats.eventsDropped == 0)
            #expect(UInt64(refusals.value.load(ordering: .relaxed)) == stats.eventsRejected)
        }
    }

    @Test("Blocking producers with a generous timeout lose nothing")
    func blockLosesNothing() async throws {
        let adapter = RecordingAdapter(.init(delay: .milliseconds(1)))
        let bus = try IngestBus(
            configuration: .init(
                shards: 2,
                ringCapacity: 32,
                batch: .init(maxEvents: 8, maxDelay: .milliseconds(1)),
                backpressure: .block(timeout: .seconds(30)),
                adapter: adapter,
                logger: quietIngestLogger
            )
        )
        _ = await onProducerThreads(2) { producer in
            for index in 0..<2_000 {
                try! bus.ingestRaw(loadEvent(producer: producer, index: index, subjects: 5))
            }
        }
        let stats = await bus.shutdown()
        #expect(stats.eventsIngested == 4_000 && stats.eventsDispatched == 4_000 && stats.eventsDropped == 0)
        #expect(checkOrder(adapter.events) == 4_000)
    }

    @Test("A transiently failing adapter is retried with the same dedupe ids: every event exactly once")
    func transientRetries() async throws {
        let adapter = RecordingAdapter(.init(transientFailures: 3))
        let bus = try IngestBus(
            configuration: .init(
                shards: 1, adapter: adapter, retryBudget: 5, retryBackoff: .milliseconds(1), logger: quietIngestLogger)
        )
        for index in 0..<500 { try bus.ingestRaw(loadEvent(producer: 0, index: index, subjects: 3)) }
        let stats = await bus.shutdown()
        #expect(stats.eventsDispatched == 500 && stats.eventsDropped == 0)
        #expect(stats.batchRetries == 3)
        #expect(checkOrder(adapter.events) == 500)
        let attempts = adapter.attempts
        #expect(attempts.count == adapter.batches.count + 3)
        #expect(
            attempts[0] == attempts[1] && attempts[1] == attempts[2] && attempts[2] == attempts[3],
            "a retry resends the same ids")
    }

    @Test("A fatal adapter error drops the batch, counts it and reports it")
    func fatalDropsBatch() async throws {
        let adapter = RecordingAdapter(.init(fatalOnFirstBatchOfShard: 0))
        let reported = ReportedBatches()
        let bus = try IngestBus(
            configuration: .init(
                shards: 1,
                adapter: adapter,
                onDroppedBatch: { batch, error in
                    #expect(error.code == .fatal)
                    reported.sizes.withLock { $0.append(batch.events.count) }
                },
                logger: quietIngestLogger
            )
        )
        for index in 0..<100 { try bus.ingestRaw(loadEvent(producer: 0, index: index, subjects: 3)) }
        try await bus.flush()
        for index in 100..<200 { try bus.ingestRaw(loadEvent(producer: 0, index: index, subjects: 3)) }
        let stats = await bus.shutdown()
        let dropped = reported.sizes.withLock { $0 }
        #expect(dropped.count == 1)
        #expect(stats.eventsDropped == UInt64(dropped[0]))
        #expect(stats.eventsDispatched + stats.eventsDropped == 200)
        #expect(stats.batchRetries == 0, "fatal errors are not retried")
    }

    @Test("Adding and removing shards under load loses nothing and keeps per-subject order")
    func reshardUnderLoad() async throws {
        let adapter = RecordingAdapter()
        let bus = try IngestBus(
            configuration: .init(
                shards: 2, ringCapacity: 256, backpressure: .block(timeout: .seconds(30)), adapter: adapter,
                maxShards: 8, logger: quietIngestLogger)
        )
        let producing = AtomicCounter(1)
        let producers = Task {
            await onProducerThreads(3) { producer in
                var index = 0
                while producing.value.load(ordering: .relaxed) == 1, index < 2_000_000 {
                    try! bus.ingestRaw(loadEvent(producer: producer, index: index, subjects: 40))
                    index += 1
                }
                return index
            }.reduce(0, +)
        }
        try await bus.addShards(2)
        #expect(bus.shardCount == 4)
        try await bus.removeShards(1)
        try await bus.addShards(3)
        try await bus.removeShards(5)
        #expect(bus.shardCount == 1)
        try await bus.addShards(1)
        producing.value.store(0, ordering: .relaxed)
        let total = await producers.value
        let stats = await bus.shutdown()
        #expect(total > 0)
        #expect(
            stats.eventsIngested == UInt64(total) && stats.eventsDispatched == UInt64(total)
                && stats.eventsDropped == 0, "\(stats)")
        #expect(checkOrder(adapter.events) == total)
        #expect(await #expect(throws: CourierError.self) { try await bus.addShards(1) }?.code == .shutdown)
        #expect(throws: CourierError.self) { try bus.ingestRaw(loadEvent(producer: 9, index: 0, subjects: 1)) }
    }

    @Test("A shutdown deadline that passes drops what is left, counts it and says the shutdown was lossy")
    func lossyShutdown() async throws {
        let adapter = RecordingAdapter(.init(delay: .milliseconds(50)))
        let bus = try IngestBus(
            configuration: .init(
                shards: 1, ringCapacity: 4096, batch: .init(maxEvents: 10, maxDelay: .zero), adapter: adapter,
                logger: quietIngestLogger)
        )
        for index in 0..<2_000 { try bus.ingestRaw(loadEvent(producer: 0, index: index, subjects: 2)) }
        let stats = await bus.shutdown(deadline: .milliseconds(200))
        #expect(stats.shutdownWasLossy)
        #expect(stats.eventsDropped > 0)
        #expect(stats.eventsDispatched + stats.eventsDropped == 2_000, "\(stats)")
    }

    @Test("ProviderAdapter stores through the memory provider; poll merges shards and resumes from its cursor")
    func providerAdapterAndPoll() async throws {
        let provider = MemoryProvider()
        let bus = try IngestBus(
            configuration: .init(
                shards: 3, adapter: ProviderAdapter(provider: provider, retention: 40), logger: quietIngestLogger)
        )
        var ids: [String] = []
        for index in 0..<60 {
            let event = Event(
                subject: "events.poll.s\(index % 6)", category: "poll", payload: ["i": .int(Int64(index))])
            try bus.ingestRaw(RawEvent(event))
            ids.append(event.id)
        }
        try await bus.flush()
        let stored = try await provider.history(filter: "events.poll.>", limit: 1000)
        #expect(Set(stored.map(\.id)) == Set(ids), "every event stored once")
        #expect(stored.count == 60)

        // Retention is 40 per shard, so nothing is lost to it here; page through 25 at a time.
        var cursor: String?
        var polled: [IngestedEvent] = []
        for _ in 0..<10 {
            let page = try await bus.poll(ConsumeRequest(limit: 25, cursor: cursor))
            polled += page.events
            cursor = page.cursor
            #expect(page.gaps.isEmpty)
            if !page.hasMore { break }
        }
        #expect(polled.count == 60)
        #expect(Set(try polled.map { try $0.raw.decoded().id }) == Set(ids))
        let again = try await bus.poll(ConsumeRequest(limit: 25, cursor: cursor))
        #expect(again.events.isEmpty && !again.hasMore, "the cursor resumes after the last event")

        let filtered = try await bus.poll(ConsumeRequest(limit: 100, filter: "events.poll.s1"))
        #expect(filtered.events.count == 10 && filtered.events.allSatisfy { $0.raw.subject == "events.poll.s1" })
        let byTime = try await bus.poll(ConsumeRequest(limit: 100, ordering: .timestamp))
        #expect(byTime.events.map(\.raw.timestamp) == byTime.events.map(\.raw.timestamp).sorted())
        await #expect(throws: CourierError.self) { _ = try await bus.poll(ConsumeRequest(cursor: "!!not base64")) }
        await bus.shutdown()
    }

    @Test(
        "The memory provider keeps ingested events in wire form: delivered decoded, a resent batch stored once, bad bytes refused by name"
    )
    func providerAdapterWireForm() async throws {
        let provider = MemoryProvider()
        let adapter = ProviderAdapter(provider: provider)
        let events = (0..<5).map { index in
            Event(
                subject: "events.wire.s\(index)", category: "wire", payload: ["i": .int(Int64(index)), "t": "é\n"],
                metadata: ["k": "v"])
        }
        var raws = events.map { RawEvent($0) }
        raws.insert(RawEvent(subject: "events.wire.bad", bytes: Array(#"{"id":"x","subject":"#.utf8)), at: 2)
        raws.append(RawEvent(Event(subject: "other.wire.x", category: "wire")))
        let batch = Batch(shardID: 0, events: raws, sequenceStart: 1, producerNonce: 7)
        let first = try await adapter.onBatch(batch)
        #expect(first.rejected.map(\.index) == [2, 6])
        #expect(first.rejected.first?.error.code == .invalidEvent)
        #expect(first.rejected.first?.error.input == "events.wire.bad")
        #expect(first.rejected.last?.error.code == .invalidSubject)
        let again = try await adapter.onBatch(batch)
        #expect(again.rejected.map(\.index) == [2, 6])
        let info = try await provider.info()
        #expect(info.messages == 5, "the resent batch stored nothing twice")
        #expect(info.details["duplicatesRejected"] == "5")

        let subscription = try await provider.subscribeDurable(
            consumer: "wire", filter: "events.wire.>", options: SubscribeOptions(deliverPolicy: .all))
        var received: [Event] = []
        for _ in 0..<5 {
            let pending = try #require(try await subscription.next(timeout: .seconds(5)))
            received.append(pending.event)
            try await pending.ack()
        }
        #expect(received == events, "each event decodes to exactly what was ingested")
        #expect(try await provider.history(filter: "events.wire.s3", limit: 10) == [events[3]])
        await subscription.close()
    }

    @Test("A stale cursor skips to the earliest retained event and reports the gap")
    func staleCursor() async throws {
        let bus = try IngestBus(
            configuration: .init(
                shards: 1, adapter: ProviderAdapter(provider: MemoryProvider(), retention: 10),
                logger: quietIngestLogger)
        )
        for index in 0..<5 {
            try bus.ingestRaw(
                RawEvent(Event(subject: "events.gap.x", category: "gap", payload: ["i": .int(Int64(index))])))
        }
        try await bus.flush()
        let first = try await bus.poll(ConsumeRequest(limit: 2))
        #expect(first.events.count == 2 && first.gaps.isEmpty)
        for index in 5..<30 {
            try bus.ingestRaw(
                RawEvent(Event(subject: "events.gap.x", category: "gap", payload: ["i": .int(Int64(index))])))
        }
        try await bus.flush()
        let resumed = try await bus.poll(ConsumeRequest(limit: 100, cursor: first.cursor))
        #expect(resumed.gaps == [0: 18], "events 2…19 were evicted: skipped and reported")
        #expect(try resumed.events.map { try $0.raw.decoded().payload["i"] } == (20..<30).map { .int(Int64($0)) })
        await bus.shutdown()
    }

    @Test("A persisted nonce survives a restart and the new run's sequences never reuse old dedupe ids")
    func persistedNonce() async throws {
        let path = "/tmp/courier-nonce-\(UInt32.random(in: 0...UInt32.max))"
        defer { unlink(path) }
        let first = RecordingAdapter()
        let bus1 = try IngestBus(
            configuration: .init(
                shards: 1, adapter: first, producerNonce: .persisted(path: path), logger: quietIngestLogger))
        try bus1.ingestRaw(loadEvent(producer: 0, index: 0, subjects: 1))
        await bus1.shutdown()
        let second = RecordingAdapter()
        let bus2 = try IngestBus(
            configuration: .init(
                shards: 1, adapter: second, producerNonce: .persisted(path: path), logger: quietIngestLogger))
        try bus2.ingestRaw(loadEvent(producer: 0, index: 0, subjects: 1))
        await bus2.shutdown()
        #expect(bus1.producerNonce == bus2.producerNonce && bus1.producerNonce != 0)
        #expect(first.batches[0].dedupeID(at: 0) != second.batches[0].dedupeID(at: 0))
        #expect(second.batches[0].sequenceStart == 1 << 40)
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: path))
        let error = try #require(throws: CourierError.self) {
            _ = try IngestBus(configuration: .init(adapter: NoopAdapter(), producerNonce: .persisted(path: path)))
        }
        #expect(error.input == path)
    }

    @Test(
        "Bad configurations are refused, naming the setting",
        arguments: [
            (IngestBus.Configuration(ringCapacity: 1000), "ringCapacity"),
            (IngestBus.Configuration(shards: 0), "shards"),
            (IngestBus.Configuration(shards: 9, maxShards: 8), "shards"),
            (IngestBus.Configuration(batch: .init(maxEvents: 0)), "batch.maxEvents"),
            (IngestBus.Configuration(backpressure: .sample(rate: 0)), "backpressure"),
            (IngestBus.Configuration(retryBudget: -1), "retryBudget"),
            (IngestBus.Configuration(producerNonce: .fixed(0)), "producerNonce"),
        ])
    func badConfigurations(configuration: IngestBus.Configuration, setting: String) throws {
        let error = try #require(throws: CourierError.self) { _ = try IngestBus(configuration: configuration) }
        #expect(error.code == .invalidConfiguration && error.input == setting, "\(error)")
    }

    @Test("suggestScaling advises more shards for full rings and fewer for idle ones")
    func scalingAdvice() async throws {
        let slow = RecordingAdapter(.init(delay: .milliseconds(200)))
        let busy = try IngestBus(
            configuration: .init(
                shards: 2, ringCapacity: 64, batch: .init(maxEvents: 4), backpressure: .dropNewest, adapter: slow,
                logger: quietIngestLogger)
        )
        for index in 0..<400 { _ = try? busy.ingestRaw(loadEvent(producer: 0, index: index, subjects: 20)) }
        #expect(busy.suggestScaling().shards > 2, "\(busy.suggestScaling())")
        await busy.shutdown(deadline: .milliseconds(100))

        let idle = try IngestBus(configuration: .init(shards: 4, adapter: NoopAdapter(), logger: quietIngestLogger))
        #expect(idle.suggestScaling().shards < 4, "\(idle.suggestScaling())")
        await idle.shutdown()
    }
}
