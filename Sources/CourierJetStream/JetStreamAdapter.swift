#if NATS
public import CourierCore
public import CourierIngest
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

/// The ingest core's JetStream adapter: each batch is published with every event's dedupe id as
/// its `Nats-Msg-Id`, so a retried batch, or one resent after a reconnect, is stored once. On
/// nats-server 2.12+ with `allow_atomic` (``JetStreamProvider/Configuration/atomicBatchPublish``)
/// a batch goes as an atomic batch, stored whole or not at all with one acknowledgement;
/// otherwise pipelined per message, at most ``JetStreamProvider/Configuration/publishWindow`` in
/// flight.
/// `pollShard` reads back from the stream, recognising a shard's events by their dedupe ids.
///
/// Over an `EventPipeline` whose layers change events (validation, encryption, tracing), each
/// event is decoded, passed through those layers and encoded again before it is sent — slower
/// than sending the bytes as they are, and the only way the layers can hold; an event a layer
/// refuses is rejected (and dead-lettered by the bus) while the rest of the batch is stored.
public final class JetStreamAdapter: Adapter {
    /// The provider batches are published through.
    public let provider: JetStreamProvider
    /// The pipeline whose layers each event passes, when the adapter was made with one.
    public let pipeline: EventPipeline?
    /// How long one batch may keep retrying its publishes (reconnects included) before it
    /// fails retryably and the bus retries it.
    public let publishTimeout: Duration
    private let closed = ShutdownFlag()
    /// Each producer's shard's ordered lane, so a shard's next batch can be sent while the
    /// server still stores the previous one.
    private let lanes = PublishLanes()

    /// An adapter publishing the bytes of each event as they are, straight to `provider` (no
    /// pipeline layer).
    public init(provider: JetStreamProvider, publishTimeout: Duration = .seconds(30)) {
        self.provider = provider
        self.pipeline = nil
        self.publishTimeout = publishTimeout
    }

    /// An adapter publishing through `pipeline`'s layers to the JetStream provider under it.
    ///
    /// - Throws: `invalidConfiguration` when the pipeline is not over a JetStream provider.
    public init(pipeline: EventPipeline, publishTimeout: Duration = .seconds(30)) throws {
        guard let provider = pipeline.base as? JetStreamProvider else {
            throw CourierError(
                .invalidConfiguration,
                "JetStreamAdapter needs a pipeline over the JetStream provider, not '\(pipeline.base.name)'; use ProviderAdapter",
                input: pipeline.base.name)
        }
        self.provider = provider
        self.pipeline = pipeline
        self.publishTimeout = publishTimeout
    }

    public var name: String { "jetstream(\(provider.configuration.stream))" }

    /// The adapter bounds its own publishes.
    public var needsTimeoutGuard: Bool { false }

    /// A shard's next batch may be handed over while the previous one awaits acknowledgements:
    /// per message, it is sent behind the previous one in the same ordered lane; as an atomic
    /// batch, it waits for the previous one's end.
    public var pipelinesBatches: Bool { true }

    /// Only subjects under the stream's prefix can be stored.
    public var subjectPrefix: String? { provider.subjectPrefix }

    /// Rejected events go to the pipeline's (or provider's) dead letters: the dead-letter stream
    /// by default, encrypted when the pipeline encrypts.
    public var deadLetters: (any DlqHandler)? { pipeline?.deadLetters ?? provider.deadLetters }

    /// Publishes the batch pipelined, in order. An event that can never be stored (outside the
    /// stream's subjects, larger than the server or stream accepts, refused by the stream for
    /// good) is rejected and the rest stored; a retryable failure that outlasts
    /// ``publishTimeout`` fails the batch, which the bus retries with the same dedupe ids (the
    /// publisher resends failed messages in order, so what was stored is a prefix of the batch).
    public func onBatch(_ batch: Batch) async throws -> BatchResult {
        guard !closed.isSet else { throw CourierError(.shutdown, "the JetStream adapter was shut down", input: name) }
        let layered = pipeline.flatMap { $0.layers.transformsEvents ? $0 : nil }
        let results: [Result<PublishAck, CourierError>]
        do {
            let lane = lanes.lane(producer: batch.producerNonce, shard: batch.shardID)
            if provider.usesAtomicBatches(batch.events.count) {
                // An atomic call takes its lane's turn whole: it starts once the call before it
                // ended, and the next one waits for its commit.
                let turn = OrderedBatch(count: 0, deadline: .now + publishTimeout)
                var failed = true
                defer { turn.finish(failed: failed) }
                if let earlier = lane.enter(turn, sequence: batch.sequenceStart), await earlier.waitFinished() {
                    throw CourierError(
                        .transient, "an earlier batch of shard \(batch.shardID) failed; this one waits for its retry",
                        input: name, isRetryable: true)
                }
                results = try await publishAtomically(batch, layered: layered)
                failed = results.contains(where: OrderedBatch.failsBatch)
            } else {
                // Each message is made just before it is sent, not the whole batch first: the
                // first one goes out as soon as the shard hands the batch over, while the server
                // may still be storing the previous batch.
                var scratch: [UInt8] = []
                results = try await provider.publish(
                    count: batch.events.count, timeout: publishTimeout, lane: lane, sequence: batch.sequenceStart
                ) { index, reply in
                    try makeNATSMessage(
                        try message(batch, at: index, layered: layered), reply: reply, scratch: &scratch)
                }
            }
        } catch let error as CourierError {
            throw Self.adapterError(error)
        }
        var rejected: [RejectedEvent] = []
        var retryable: CourierError?
        for (index, result) in results.enumerated() {
            guard case .failure(let error) = result else { continue }
            if OrderedBatch.failsBatch(result) {
                retryable = retryable ?? error
            } else {
                rejected.append(RejectedEvent(index: index, error: error))
            }
        }
        if let retryable { throw Self.adapterError(retryable) }
        if let metrics = pipeline?.layers.metrics {
            for case .success in results { metrics.recordPublish(nanoseconds: 0) }
        }
        return BatchResult(rejected: rejected)
    }

    /// The batch as atomic batches (each stored whole or not at all): every message is made
    /// first, and those that can never be stored are left out and rejected.
    private func publishAtomically(_ batch: Batch, layered: EventPipeline?) async throws
        -> [Result<PublishAck, CourierError>]
    {
        var results = [Result<PublishAck, CourierError>?](repeating: nil, count: batch.events.count)
        var messages: [OutgoingMessage] = []
        var indices: [Int] = []
        messages.reserveCapacity(batch.events.count)
        indices.reserveCapacity(batch.events.count)
        for index in batch.events.indices {
            do {
                messages.append(try message(batch, at: index, layered: layered))
                indices.append(index)
            } catch {
                results[index] = .failure(Self.rejection(error, of: batch.events[index]))
            }
        }
        let published = try await provider.publish(checkedMessages: messages, timeout: publishTimeout)
        for (index, result) in zip(indices, published) { results[index] = result }
        // Every message gets a result; were one missing, resending it (same dedupe id) is safe.
        return results.map {
            $0 ?? .failure(CourierError(.transient, "no result for a message of the batch", isRetryable: true))
        }
    }

    /// The message for event `index` of `batch`, with its dedupe id, passed through the
    /// pipeline's layers when they change events.
    ///
    /// - Throws: why the event can never be stored: a layer refused it, its subject is outside
    ///   the stream's, or it is larger than the server and stream accept.
    private func message(_ batch: Batch, at index: Int, layered: EventPipeline?) throws -> OutgoingMessage {
        let event = batch.events[index]
        var payload = event.bytes
        if let layered {
            do {
                payload = try layered.prepareForProvider(try event.decoded()).wireJSON()
            } catch {
                throw Self.rejection(error, of: event)
            }
        }
        if let outside = provider.subjectOutsideStream(event.subject) { throw outside }
        let message = OutgoingMessage(
            subject: event.subject, payload: payload, dedupeID: MessageID(prefix: batch.dedupeIDPrefix, index: index))
        if let tooLarge = provider.sizeProblem(message) { throw tooLarge }
        return message
    }

    /// `error` as the reason an event is rejected.
    private static func rejection(_ error: any Error, of event: RawEvent) -> CourierError {
        error as? CourierError ?? CourierError(.invalidEvent, "\(error)", input: event.subject)
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

#endif
