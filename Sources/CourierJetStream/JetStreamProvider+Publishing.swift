#if NATS
public import CourierCore

// MARK: Publishing

extension JetStreamProvider {
    /// The largest message the server and the stream accept.
    var messageSizeLimit: Int { min(connection.maxPayload, eventStream.maxMessageSize ?? .max) }

    /// The envelope and subject rules every published event must meet.
    private func checkPublishable(_ event: Event) throws {
        try event.validate()
        if let outside = subjectOutsideStream(event.subject) { throw outside }
    }

    /// The error for a subject outside the stream's `<prefix>.>`, `nil` for one inside it. The
    /// prefix is compared byte for byte, as the server matches subjects.
    func subjectOutsideStream(_ subject: String) -> CourierError? {
        guard !subject.utf8.starts(with: subjectPrefixDot.utf8) else { return nil }
        return CourierError.invalidSubject(subject, "it is outside the stream's subjects '\(subjectPrefix).>'")
    }

    /// ``checkPublishable(_:)`` in a batch. `lastValidSubject` is the subject of the previous
    /// event that passed: an event on the same subject skips the subject's checks, and one that
    /// passes is kept there.
    private func checkPublishable(_ event: Event, lastValidSubject: inout String?) throws {
        if event.subject == lastValidSubject {
            try event.validate(subjectKnownValid: true)
            return
        }
        try checkPublishable(event)
        lastValidSubject = event.subject
    }

    /// Publishes and waits for the stream's acknowledgement. A retryable failure (no
    /// responders while the server restarts, a timeout) is retried with the same message id
    /// until `options.timeout` (30 s by default), so the event is stored once or the call
    /// throws a retryable error. The wait blocks one of ``executor``'s threads, never the
    /// cooperative pool; for many events use ``publishBatch(_:timeout:)``.
    public func publish(_ event: Event, options: PublishOptions) async throws -> PublishAck {
        let message = try outgoing(
            event, messageID: options.messageID, expectedLastSequence: options.expectedLastSequence,
            headers: event.traceHeaders)
        return try await publishAcknowledged(message, timeout: options.timeout ?? Self.defaultPublishTimeout)
    }

    func publishAcknowledged(_ message: OutgoingMessage, timeout: Duration) async throws -> PublishAck {
        let msg = try PreparedMessage(message)
        let connection = self.connection
        let requestTimeout = configuration.requestTimeout
        let deadline = ContinuousClock.now + timeout
        // Already on a publish thread (a loop that prefers the executor): publish right here.
        if publishExecutor.isCurrent,
            case .success(let ack) = connection.publishSync(message, msg: msg, wait: min(requestTimeout, timeout))
        {
            return ack
        }
        return try await withTaskExecutorPreference(publishExecutor) {
            var attempts = 0
            while true {
                attempts += 1
                // Shutdown began (maybe while this publish slept in its backoff): stop retrying.
                try ensureOpen()
                let remaining = deadline - ContinuousClock.now
                let result = connection.publishSync(
                    message, msg: msg, wait: min(requestTimeout, max(remaining, .milliseconds(1))))
                switch result {
                case .success(let ack):
                    return ack
                case .failure(let error):
                    try ensureOpen()
                    let backoff = min(Duration.milliseconds(25) * (1 << min(attempts - 1, 5)), .seconds(1))
                    guard error.isRetryable, ContinuousClock.now + backoff < deadline else {
                        var final = error
                        if attempts > 1 { final.message += " (after \(attempts) attempts)" }
                        throw final
                    }
                    try await Task.sleep(for: backoff)
                }
            }
        }
    }

    /// How long a publish keeps retrying (with the same message id) before it fails retryably.
    public static let defaultPublishTimeout: Duration = .seconds(30)

    /// Publishes many events pipelined (at most ``Configuration/publishWindow`` in flight) and
    /// returns each one's result in order. Each event's dedupe id is its id, so calling this
    /// again with events that failed never stores any of them twice.
    ///
    /// Events go out per message even where atomic batches are possible: pipelined messages
    /// keep a nats-server busier than one batch at a time does (see BENCHMARKS.md), and a
    /// caller of this method gets a result per event, not a batch.
    public func publishBatch(_ events: [Event], timeout: Duration?) async -> [Result<PublishAck, CourierError>] {
        let timeout = timeout ?? Self.defaultPublishTimeout
        if let closed = closedError() { return Array(repeating: .failure(closed), count: events.count) }
        let limit = messageSizeLimit
        var scratch: [UInt8] = []
        scratch.reserveCapacity(1024)
        var lastValidSubject: String?
        // Borrowed from the array, not copied: a copy retains and releases each of its strings.
        // The header block and the event's JSON are written into one buffer, which becomes the
        // message in one copy.
        func prepare(_ event: borrowing Event, reply: UnsafePointer<CChar>) throws -> OpaquePointer {
            try checkPublishable(event, lastValidSubject: &lastValidSubject)
            scratch.removeAll(keepingCapacity: true)
            try HeaderBlock.write(
                event.traceHeaders, messageID: MessageID(event.id), expectedLastSequence: nil, subject: event.subject,
                into: &scratch)
            let headerLength = scratch.count
            event.writeWireJSON(into: &scratch)
            if scratch.count > limit {
                throw tooLarge(subject: event.subject, size: scratch.count - headerLength, limit: limit)
            }
            return try makeNATSMessage(subject: event.subject, reply: reply, bytes: scratch, headerLength: headerLength)
        }
        return await connection.publisher.publish(count: events.count, timeout: timeout) { index, reply in
            try prepare(events[index], reply: reply)
        }
    }

    /// Whether a call publishing `count` messages goes out as atomic batches: the stream allows
    /// them and the server the connection is on (maybe another one since a reconnect) knows them.
    func usesAtomicBatches(_ count: Int) -> Bool {
        atomicBatches && count > 1 && connection.serverInfo?.isAtLeast(2, 12) == true
    }

    /// Publishes checked messages as atomic batches; what is not stored whole is published per
    /// message (see ``AtomicBatchPublisher``).
    private func publishAtomically(_ messages: [OutgoingMessage], timeout: Duration) async
        -> [Result<PublishAck, CourierError>]
    {
        let publisher = connection.publisher
        return await publisher.operation {
            await connection.batches.publish(messages, timeout: timeout) { rest, remaining in
                await publisher.publishBatch(rest, timeout: remaining, checkingOrder: false, oneAtATime: true)
            }
        }
    }

    /// Publishes pre-serialised messages — each with its own subject, headers and dedupe id —
    /// pipelined and in order, and returns each one's result in order. This is the raw level,
    /// under every pipeline layer: the ingest core's JetStream adapter and the CloudEvents NATS
    /// binding use it. Retryable failures are resent in order with the same ids until `timeout`.
    ///
    /// - Throws: `CourierError/Code/invalidSubject` or `CourierError/Code/payloadTooLarge`
    ///   naming the first message that can never be sent (nothing is sent then), or `shutdown`.
    public func publish(messages: [OutgoingMessage], timeout: Duration = defaultPublishTimeout) async throws
        -> [Result<PublishAck, CourierError>]
    {
        try ensureOpen()
        for message in messages {
            try Subjects.validate(message.subject)
            try HeaderBlock.check(message)
            if let tooLarge = sizeProblem(message) { throw tooLarge }
        }
        return await connection.publisher.publishBatch(messages, timeout: timeout)
    }

    /// As ``publish(messages:timeout:)`` for a caller that already checked every message's
    /// subject and size (the ingest adapter: subjects at `ingestRaw`, sizes per event so one
    /// oversized event is rejected alone), so the hot path does not check them twice.
    ///
    /// Where the server and stream allow it (``Configuration/atomicBatchPublish``), the
    /// messages go out as atomic batches: each stored whole or not at all, which is what the
    /// ingest adapter's contract asks of a batch.
    func publish(checkedMessages messages: [OutgoingMessage], timeout: Duration) async throws
        -> [Result<PublishAck, CourierError>]
    {
        try ensureOpen()
        if usesAtomicBatches(messages.count), !messages.contains(where: { $0.expectedLastSequence != nil }) {
            return await publishAtomically(messages, timeout: timeout)
        }
        return await connection.publisher.publishBatch(messages, timeout: timeout)
    }

    /// Publishes `count` messages, each made by `prepare` just before it is sent (see
    /// ``AsyncPublisher/publish(count:timeout:checkingOrder:oneAtATime:prepare:)``), pipelined
    /// and in order. A `prepare` failure is that message's result.
    func publish(
        count: Int, timeout: Duration, lane: PublishLane? = nil, sequence: UInt64 = 0,
        prepare: (Int, UnsafePointer<CChar>) throws -> OpaquePointer
    ) async throws -> [Result<PublishAck, CourierError>] {
        try ensureOpen()
        return await connection.publisher.publish(
            count: count, timeout: timeout, lane: lane, sequence: sequence, prepare: prepare)
    }

    func outgoing(_ event: Event, messageID: String?, expectedLastSequence: UInt64?, headers: [(String, String)] = [])
        throws -> OutgoingMessage
    {
        try ensureOpen()
        try checkPublishable(event)
        let payload = event.wireJSON()
        let id = MessageID(messageID ?? event.id)
        let limit = messageSizeLimit
        if payload.count + HeaderBlock.length(headers, messageID: id, expectedLastSequence: expectedLastSequence)
            > limit
        {
            throw tooLarge(subject: event.subject, size: payload.count, limit: limit)
        }
        return OutgoingMessage(
            subject: event.subject, payload: payload, headers: headers, dedupeID: id,
            expectedLastSequence: expectedLastSequence)
    }

    /// The error for `message` when it is larger than the server and stream accept, else `nil`.
    func sizeProblem(_ message: OutgoingMessage) -> CourierError? {
        let limit = messageSizeLimit
        let headerLength = HeaderBlock.length(
            message.headers, messageID: message.dedupeID, expectedLastSequence: message.expectedLastSequence)
        guard message.payload.count + headerLength > limit else { return nil }
        return tooLarge(subject: message.subject, size: message.payload.count, limit: limit)
    }

    private func tooLarge(subject: String, size: Int, limit: Int) -> CourierError {
        CourierError(
            .payloadTooLarge,
            "message for '\(subject)' is \(size) bytes; the server and stream accept at most \(limit) bytes (headers included)",
            input: subject
        )
    }
}
#endif
