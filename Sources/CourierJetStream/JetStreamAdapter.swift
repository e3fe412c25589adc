#if NATS
public import CourierCore
import Synchronization

/// A message as stored in the stream.
public struct StoredMessage: Sendable, Hashable {
    /// Its stream sequence.
    public var sequence: UInt64
    /// Its subject.
    public var subject: String
    /// Its `Nats-Msg-Id`, if it had one.
    public var messageID: String?
    /// Its body.
    public var payload: [UInt8]
    /// When the server stored it, Unix nanoseconds.
    public var timestamp: Int64
}

/// The ingest core's JetStream adapter: each batch is published pipelined (asynchronously, at
/// most ``JetStreamProvider/Configuration/publishWindow`` in flight) with every event's dedupe id
/// as its `Nats-Msg-Id`, so a retried batch, or one resent after a reconnect, is stored once.
/// `pollShard` reads back from the stream, recognising a shard's events by their dedupe ids.
public final class JetStreamAdapter: Adapter {
    /// The provider batches are published through.
    public let provider: JetStreamProvider
    /// How long one batch may keep retrying its publishes (reconnects included) before it
    /// fails retryably and the bus retries it.
    public let publishTimeout: Duration
    private let closed = SharedShutdownFlag()

    /// An adapter over `provider`.
    public init(provider: JetStreamProvider, publishTimeout: Duration = .seconds(30)) {
        self.provider = provider
        self.publishTimeout = publishTimeout
    }

    public var name: String { "jetstream(\(provider.configuration.stream))" }

    /// The adapter bounds its own publishes.
    public var needsTimeoutGuard: Bool { false }

    /// Only subjects under the stream's prefix can be stored.
    public var subjectPrefix: String? { provider.subjectPrefix }

    /// Rejected events go to the provider's dead letters (its dead-letter stream by default).
    public var deadLetters: (any DlqHandler)? { provider.deadLetters }

    /// Publishes the batch pipelined, in order. An event that can never be stored (outside the
    /// stream's subjects, larger than the server or stream accepts, refused by the stream for
    /// good) is rejected and the rest stored; a retryable failure that outlasts
    /// ``publishTimeout`` fails the batch, which the bus retries with the same dedupe ids (the
    /// publisher resends failed messages in order, so what was stored is a prefix of the batch).
    public func onBatch(_ batch: Batch) async throws -> BatchResult {
        guard !closed.isSet else { throw CourierError(.shutdown, "the JetStream adapter was shut down", input: name) }
        var rejected: [RejectedEvent] = []
        var messages: [OutgoingMessage] = []
        var indices: [Int] = []
        messages.reserveCapacity(batch.events.count)
        indices.reserveCapacity(batch.events.count)
        let prefix = provider.subjectPrefix + "."
        for (index, event) in batch.events.enumerated() {
            let message = OutgoingMessage(
                subject: event.subject, payload: event.bytes, messageID: batch.dedupeID(at: index))
            if !event.subject.hasPrefix(prefix) {
                rejected.append(
                    RejectedEvent(
                        index: index,
                        error: CourierError.invalidSubject(
                            event.subject, "it is outside the stream's subjects '\(prefix)>'")))
            } else if let tooLarge = provider.sizeProblem(message) {
                rejected.append(RejectedEvent(index: index, error: tooLarge))
            } else {
                messages.append(message)
                indices.append(index)
            }
        }
        let results: [Result<PublishAck, CourierError>]
        do {
            results = try await provider.publishRaw(messages, timeout: publishTimeout)
        } catch let error as CourierError {
            throw Self.adapterError(error)
        }
        var retryable: CourierError?
        for (position, result) in results.enumerated() {
            guard case .failure(let error) = result else { continue }
            if error.isRetryable || error.code == .shutdown || error.code == .closed {
                retryable = retryable ?? error
            } else {
                rejected.append(RejectedEvent(index: indices[position], error: error))
            }
        }
        if let retryable { throw Self.adapterError(retryable) }
        return BatchResult(rejected: rejected.sorted { $0.index < $1.index })
    }

    /// Maps provider errors onto the adapter contract's kinds.
    static func adapterError(_ error: CourierError) -> CourierError {
        switch error.code {
        case .closed, .shutdown: CourierError(.shutdown, error.message, input: error.input)
        case .connectionFailed, .timeout, .backpressure:
            CourierError(error.code, error.message, input: error.input, isRetryable: true)
        default:
            error.isRetryable
                ? CourierError(.transient, error.message, input: error.input, isRetryable: true)
                : CourierError(.fatal, error.message, input: error.input)
        }
    }

    public func pollShard(shard: Int, cursor: UInt64, limit: Int) async throws -> ShardPollResult {
        var position = cursor
        var skipped: UInt64 = 0
        let first = try await provider.info().firstSequence
        if first > position + 1, position > 0 || first > 1 {
            skipped = first - (position + 1)
            position = first - 1
        }
        var events: [IngestedEvent] = []
        let chunk = max(limit, 512)
        for _ in 0..<256 {
            let messages = try await provider.readStored(from: position + 1, limit: chunk)
            for message in messages {
                position = message.sequence
                guard let id = message.messageID, let parsed = Self.parse(id), parsed.shard == shard else { continue }
                events.append(
                    IngestedEvent(
                        raw: RawEvent(
                            subject: message.subject, bytes: message.payload, timestamp: message.timestamp / 1_000_000),
                        shard: shard,
                        sequence: parsed.sequence,
                        dedupeID: id,
                        cursor: message.sequence
                    )
                )
                if events.count == limit {
                    let last = try await provider.info().lastSequence
                    return ShardPollResult(events: events, cursor: position, hasMore: position < last, skipped: skipped)
                }
            }
            if messages.count < chunk { break }
        }
        return ShardPollResult(events: events, cursor: position, hasMore: false, skipped: skipped)
    }

    /// `(shard, sequence)` from a dedupe id `<nonce hex>:<shard>:<sequenceStart>:<index>`.
    static func parse(_ id: String) -> (shard: Int, sequence: UInt64)? {
        let parts = id.split(separator: ":")
        guard parts.count == 4, parts[0].count == 16, let shard = Int(parts[1]), let start = UInt64(parts[2]),
            let index = UInt64(parts[3])
        else { return nil }
        return (shard, start + index)
    }

    public func flush() async throws {
        _ = await provider.waitForPublishes(timeout: publishTimeout)
    }

    public func shutdown() async { closed.set() }
}

/// A flag set once.
final class SharedShutdownFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .acquiring) }
    func set() { flag.store(true, ordering: .releasing) }
}
#endif
