public import CourierCore
import DequeModule
import Synchronization

/// An ordered run of events from one shard, handed to an ``Adapter`` in one call.
public struct Batch: Sendable {
    /// The shard the events come from.
    public let shardID: Int
    /// The events, in the order they were ingested.
    public let events: [RawEvent]
    /// The shard sequence number of the first event; the others follow without gaps.
    public let sequenceStart: UInt64
    /// The producer identity of the bus that formed the batch.
    public let producerNonce: UInt64
    /// What every dedupe id of the batch starts with, `<nonce hex>:<shard>:<sequenceStart>:`,
    /// built once rather than per event; the event's index follows it.
    package let dedupeIDPrefix: String

    /// Creates a batch.
    public init(shardID: Int, events: [RawEvent], sequenceStart: UInt64, producerNonce: UInt64) {
        self.shardID = shardID
        self.events = events
        self.sequenceStart = sequenceStart
        self.producerNonce = producerNonce
        self.dedupeIDPrefix = "\(Hex.encode64(producerNonce)):\(shardID):\(sequenceStart):"
    }

    /// The dedupe id of the event at `index`: `<nonce hex>:<shard>:<sequenceStart>:<index>`.
    /// Resending the batch yields the same ids, so a retried batch is never stored twice.
    public func dedupeID(at index: Int) -> String {
        dedupeIDPrefix + String(index)
    }
}

/// An event an adapter stored, as read back by ``Adapter/pollShard(shard:cursor:limit:)``.
public struct IngestedEvent: Sendable, Hashable {
    /// The event.
    public var raw: RawEvent
    /// The shard it was ingested on.
    public var shard: Int
    /// Its shard sequence number.
    public var sequence: UInt64
    /// Its dedupe id.
    public var dedupeID: String
    /// The shard cursor just past this event.
    public var cursor: UInt64

    /// Creates a stored event.
    public init(raw: RawEvent, shard: Int, sequence: UInt64, dedupeID: String, cursor: UInt64) {
        self.raw = raw
        self.shard = shard
        self.sequence = sequence
        self.dedupeID = dedupeID
        self.cursor = cursor
    }
}

/// What one shard poll returned.
public struct ShardPollResult: Sendable {
    /// Events from the cursor on, oldest first.
    public var events: [IngestedEvent]
    /// The cursor to poll from next.
    public var cursor: UInt64
    /// Whether more events were available than returned.
    public var hasMore: Bool
    /// Events between the requested cursor and the first available one that are no longer
    /// retained (0 when the cursor was current).
    public var skipped: UInt64

    /// Creates a result.
    public init(events: [IngestedEvent], cursor: UInt64, hasMore: Bool, skipped: UInt64 = 0) {
        self.events = events
        self.cursor = cursor
        self.hasMore = hasMore
        self.skipped = skipped
    }
}

/// An event of a batch that an adapter refused on its own (it will never be storable as it is),
/// while it stored the others.
public struct RejectedEvent: Sendable, Hashable {
    /// Its index in ``Batch/events``.
    public var index: Int
    /// Why: an invalid or foreign subject, an oversized payload, bytes that are not an event, a
    /// schema violation, …
    public var error: CourierError

    /// Creates a rejection.
    public init(index: Int, error: CourierError) {
        self.index = index
        self.error = error
    }
}

/// What an adapter did with a batch it did not fail as a whole: every event was stored, in
/// order, except the ``rejected`` ones, which the bus dead-letters.
public struct BatchResult: Sendable, Hashable {
    /// Events refused one by one, by index.
    public var rejected: [RejectedEvent]

    /// Creates a result.
    public init(rejected: [RejectedEvent] = []) {
        self.rejected = rejected
    }

    /// Every event stored.
    public static let stored = BatchResult()
}

/// Where an ``IngestBus`` sends its batches.
///
/// The contract:
/// - ``onBatch(_:)`` persists the batch in order and returns, or throws. One event that can
///   never be stored (a bad subject, an oversized payload) must not cost the others: the adapter
///   stores the rest, in order, and names it in ``BatchResult/rejected``; the bus dead-letters
///   it with its reason. Errors are `CourierError`s: `transient`, `backpressure` and
///   `connectionFailed` ones are retryable (`isRetryable`) and the bus retries the same batch,
///   with the same dedupe ids, within its retry budget; `fatal` and `shutdown` ones are not. An
///   adapter must store a retried batch once (by its dedupe ids) and keep the shard's order:
///   what a failed attempt stored must be a prefix of the batch.
/// - ``pollShard(shard:cursor:limit:)`` reads back what a shard stored, from a cursor.
/// - ``flush()`` returns once everything accepted before it is persisted.
/// - After ``shutdown()``, ``onBatch(_:)`` throws a `shutdown` error.
public protocol Adapter: Sendable {
    /// A short name for logs and stats.
    var name: String { get }
    /// The subject prefix every event must carry (`<prefix>.`), when the adapter's store only
    /// takes subjects under one; the bus refuses other events at ``IngestBus/ingestRaw(_:)``.
    var subjectPrefix: String? { get }
    /// Where the events the adapter rejects are dead-lettered, unless the bus's configuration
    /// names a handler; `nil` keeps them in the bus's own memory handler.
    var deadLetters: (any DlqHandler)? { get }
    /// Persists `batch` (except events it rejects one by one).
    func onBatch(_ batch: Batch) async throws -> BatchResult
    /// Up to `limit` events of `shard` from `cursor` on.
    func pollShard(shard: Int, cursor: UInt64, limit: Int) async throws -> ShardPollResult
    /// A barrier: returns when everything accepted before it is persisted.
    func flush() async throws
    /// Stops accepting batches.
    func shutdown() async
    /// Whether the bus should bound each `onBatch` by its adapter timeout. Adapters that bound
    /// their own I/O (or cannot block) return `false` and save the timer.
    var needsTimeoutGuard: Bool { get }
    /// Whether a shard may hand its next batch over while the previous one is still in
    /// ``onBatch(_:)``, so the store works on one batch while the next is on its way. An adapter
    /// that says so keeps a shard's order across the two calls (by the batches'
    /// ``Batch/producerNonce``, ``Batch/shardID`` and ``Batch/sequenceStart``): it stores the
    /// later batch after the earlier one, and when the earlier one fails it fails the later one
    /// without storing more of it. The bus then retries the earlier batch before the later one,
    /// and never has more than two of a shard's batches in the adapter at once.
    var pipelinesBatches: Bool { get }
}

extension Adapter {
    /// By default the bus bounds `onBatch` with its adapter timeout.
    public var needsTimeoutGuard: Bool { true }
    /// By default a shard hands a batch over only once the previous one returned.
    public var pipelinesBatches: Bool { false }
    /// By default any subject is accepted.
    public var subjectPrefix: String? { nil }
    /// By default rejected events go to the bus's handler.
    public var deadLetters: (any DlqHandler)? { nil }
}

/// Accepts every batch and stores nothing: the ceiling of the ingest path itself.
public struct NoopAdapter: Adapter {
    private let state = ShutdownFlag()

    /// Creates a no-op adapter.
    public init() {}

    public var name: String { "noop" }

    public func onBatch(_ batch: Batch) async throws -> BatchResult {
        if state.isSet { throw CourierError(.shutdown, "the noop adapter was shut down") }
        return .stored
    }

    public func pollShard(shard: Int, cursor: UInt64, limit: Int) async throws -> ShardPollResult {
        ShardPollResult(events: [], cursor: cursor, hasMore: false)
    }

    public func flush() async throws {}

    public func shutdown() async { state.set() }

    public var needsTimeoutGuard: Bool { false }
}

/// A flag set once (an adapter's shut-down state), shared between copies of a value type.
package final class ShutdownFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    package init() {}
    package var isSet: Bool { flag.load(ordering: .acquiring) }
    package func set() { flag.store(true, ordering: .releasing) }
}

/// Persists batches through any `EventProvider` (the memory provider, JetStream, …): each event
/// is decoded from its wire JSON and published with its dedupe id as message id, so a retried
/// batch is stored once. It also keeps the newest ``retention`` events of each shard in memory,
/// which is what ``pollShard(shard:cursor:limit:)`` reads.
///
/// A batch is stored in order. An event the provider refuses for good (not event JSON, an
/// invalid subject, too large) is rejected and the rest stored; a retryable failure fails the
/// batch, which the bus retries whole (the events already stored are recognised as duplicates,
/// so the shard's order holds).
public final class ProviderAdapter: Adapter {
    /// The provider events are published through.
    public let provider: any EventProvider
    /// Events kept per shard for polling.
    public let retention: Int

    /// A stored event as the shard log keeps it: its dedupe id is rebuilt when it is polled.
    private struct Logged {
        let raw: RawEvent
        let sequence: UInt64
        let producerNonce: UInt64
        let batchStart: UInt64
        let index: Int
    }

    private struct ShardLog {
        var events: Deque<Logged> = []
        /// How many events were dropped from the front: `events[i]` has cursor `base + i + 1`.
        var base: UInt64 = 0
        /// The shard sequence of the newest event logged, so a retried batch is logged once.
        var lastSequence: UInt64?
    }

    private let logs = Mutex<[Int: ShardLog]>([:])
    private let closed = Atomic<Bool>(false)

    /// An adapter over `provider`, keeping `retention` events per shard for polls.
    public init(provider: any EventProvider, retention: Int = 100_000) {
        self.provider = provider
        self.retention = max(1, retention)
    }

    public var name: String { "provider(\(provider.name))" }

    public var subjectPrefix: String? { provider.subjectPrefix }

    public var deadLetters: (any DlqHandler)? { provider.deadLetters }

    public func onBatch(_ batch: Batch) async throws -> BatchResult {
        guard !closed.load(ordering: .relaxed) else {
            throw CourierError(.shutdown, "the provider adapter was shut down")
        }
        var rejected: [RejectedEvent] = []
        if let memory = provider as? MemoryProvider {
            // The embedded provider appends the whole batch under one lock and keeps each event
            // in the wire form it arrived in, checked but not decoded.
            let results = memory.publishNow(
                wire: WireBatch(
                    key: WireBatch.Key(producer: batch.producerNonce, shard: batch.shardID, start: batch.sequenceStart),
                    bytes: batch.events.map(\.bytes), subjects: batch.events.map(\.subject),
                    subjectsAreValid: batch.events.allSatisfy(\.hasValidSubject)))
            for (index, result) in results.enumerated() {
                guard case .failure(let error) = result else { continue }
                try Self.reject(Self.notEventJSON(error, raw: batch.events[index]), index: index, into: &rejected)
            }
        } else {
            for (index, raw) in batch.events.enumerated() {
                let event: Event
                do {
                    event = try raw.decoded()
                } catch {
                    rejected.append(RejectedEvent(index: index, error: Self.notEventJSON(error, raw: raw)))
                    continue
                }
                do {
                    _ = try await provider.publish(event, options: PublishOptions(messageID: batch.dedupeID(at: index)))
                } catch let error as CourierError {
                    try Self.reject(error, index: index, into: &rejected)
                }
            }
        }
        rejected.sort { $0.index < $1.index }
        logStored(batch, refused: Set(rejected.map(\.index)))
        return BatchResult(rejected: rejected)
    }

    /// The rejection of bytes that are not event wire JSON (other errors pass unchanged).
    private static func notEventJSON(_ error: any Error, raw: RawEvent) -> CourierError {
        guard let error = error as? CourierError else {
            return CourierError(.invalidEvent, "not event wire JSON: \(error)", input: raw.subject)
        }
        guard error.code == .invalidJSON else { return error }
        return CourierError(.invalidEvent, "not event wire JSON: \(error.message)", input: raw.subject)
    }

    /// Rejects an event the provider refused for good; throws for a shutdown or a retryable
    /// failure, which fails the batch (the bus retries it whole).
    private static func reject(_ error: CourierError, index: Int, into rejected: inout [RejectedEvent]) throws {
        if error.code == .shutdown || error.code == .closed {
            throw CourierError(.shutdown, error.message, input: error.input)
        }
        guard error.isRetryable else {
            rejected.append(RejectedEvent(index: index, error: error))
            return
        }
        throw CourierError(.transient, error.message, input: error.input, isRetryable: true)
    }

    /// Keeps the stored events of `batch` in its shard's log for polls, once each.
    private func logStored(_ batch: Batch, refused: Set<Int>) {
        logs.withLock { logs in
            var log = logs.removeValue(forKey: batch.shardID) ?? ShardLog()
            for (index, raw) in batch.events.enumerated() where !refused.contains(index) {
                let sequence = batch.sequenceStart + UInt64(index)
                if let last = log.lastSequence, sequence <= last { continue }  // a retried batch
                log.events.append(
                    Logged(
                        raw: raw, sequence: sequence, producerNonce: batch.producerNonce,
                        batchStart: batch.sequenceStart, index: index))
                log.lastSequence = sequence
            }
            if log.events.count > retention {
                let excess = log.events.count - retention
                log.events.removeFirst(excess)
                log.base += UInt64(excess)
            }
            logs[batch.shardID] = log
        }
    }

    public func pollShard(shard: Int, cursor: UInt64, limit: Int) async throws -> ShardPollResult {
        logs.withLock { logs in
            guard let log = logs[shard] else { return ShardPollResult(events: [], cursor: cursor, hasMore: false) }
            let start = max(cursor, log.base)
            let skipped = start - cursor
            let offset = Int(start - log.base)
            guard offset < log.events.count else {
                return ShardPollResult(events: [], cursor: start, hasMore: false, skipped: skipped)
            }
            let end = min(log.events.count, offset + max(0, limit))
            var events: [IngestedEvent] = []
            events.reserveCapacity(end - offset)
            for position in offset..<end {
                let logged = log.events[position]
                let origin = Batch(
                    shardID: shard, events: [], sequenceStart: logged.batchStart, producerNonce: logged.producerNonce)
                let cursor: UInt64 = log.base + UInt64(position) + 1
                events.append(
                    IngestedEvent(
                        raw: logged.raw, shard: shard, sequence: logged.sequence,
                        dedupeID: origin.dedupeID(at: logged.index), cursor: cursor))
            }
            return ShardPollResult(
                events: events, cursor: events.last?.cursor ?? start, hasMore: end < log.events.count, skipped: skipped)
        }
    }

    public func flush() async throws {}

    public func shutdown() async { closed.store(true, ordering: .relaxed) }
}
