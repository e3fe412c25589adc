#if NATS
public import CourierCore

/// A dead letter as the dead-letter stream holds it.
public struct StoredDeadLetter: Sendable, Hashable {
    /// Its sequence in the dead-letter stream (what ``JetStreamDeadLetterQueue/replay(_:keep:)``
    /// and ``JetStreamDeadLetterQueue/delete(_:)`` take).
    public var sequence: UInt64
    /// The letter: the original event, why it was dead-lettered, attempts, consumer, original
    /// subject and sequence.
    public var letter: DeadLetterEvent
}

/// The JetStream provider's dead letters, kept in a stream of their own
/// (``JetStreamProvider/Configuration/deadLetterStream``) whose subjects lie outside the event
/// stream's: an `events.>` subscription never receives a dead letter, and a dead letter is never
/// delivered, so never dead-lettered again. Letters keep their own retention (14 days by default)
/// and can be listed, replayed onto their original subject, and deleted (`courier dlq`).
///
/// Each letter is stored with a deterministic message id (the original event id and the
/// consumer), so a hand-off retried after a lost acknowledgement stores it once.
public struct JetStreamDeadLetterQueue: DlqHandler {
    let provider: JetStreamProvider

    /// The dead-letter stream's name.
    public var stream: String { provider.deadLetterStreamName }
    /// Its subject prefix: a letter for `events.orders.created` is on `<prefix>.events.orders.created`.
    public var subjectPrefix: String { provider.deadLetterPrefix }

    /// Stores `letter`.
    ///
    /// - Throws: a retryable error when the stream cannot take it now; the caller keeps the
    ///   original delivery and tries again later.
    public func handle(_ letter: DeadLetterEvent) async throws {
        let event = letter.asEvent(deadLetterPrefix: subjectPrefix)
        _ = try await provider.publishAcknowledged(
            OutgoingMessage(subject: event.subject, payload: event.wireJSON(), messageID: event.id),
            timeout: provider.configuration.requestTimeout * 2)
    }

    public func list(limit: Int) async throws -> [DeadLetterEvent] {
        try await stored(limit: limit).map(\.letter)
    }

    public func count() async throws -> Int {
        let name = stream
        return Int(try await provider.blocking { try $0.streamState(name).messages })
    }

    /// The newest `limit` dead letters with their sequences, oldest first.
    public func stored(limit: Int) async throws -> [StoredDeadLetter] {
        guard limit > 0 else { return [] }
        let (name, filter) = (stream, subjectPrefix + ".>")
        let events = try await provider.blocking {
            try $0.readHistoryWithSequences(stream: name, filter: filter, limit: limit)
        }
        return events.compactMap { entry in
            DeadLetterEvent(dlqEvent: entry.event).map { StoredDeadLetter(sequence: entry.sequence, letter: $0) }
        }
    }

    /// Publishes the letter's original event again on its original subject, so its consumers
    /// get another chance, then deletes the letter (unless `keep`). The replay's dedupe id is
    /// derived from the letter, so replaying one letter twice stores the event once.
    ///
    /// - Returns: where the replayed event was stored.
    @discardableResult
    public func replay(_ stored: StoredDeadLetter, keep: Bool = false) async throws -> PublishAck {
        var event = stored.letter.event
        event.metadata["courier_replayed_from"] = "\(stream):\(stored.sequence)"
        let ack = try await provider.publish(
            event, options: PublishOptions(messageID: "\(event.id)~replay-\(stream)-\(stored.sequence)"))
        if !keep { try await delete(stored.sequence) }
        return ack
    }

    /// Deletes the letter at `sequence` of the dead-letter stream.
    public func delete(_ sequence: UInt64) async throws {
        let name = stream
        try await provider.blocking { try $0.deleteMessage(stream: name, sequence: sequence) }
    }
}
#endif
