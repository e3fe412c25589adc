import DequeModule
import Synchronization

/// An event that could not be processed: its deliveries were exhausted, it was terminated with a
/// reason, its payload could not be decoded or decrypted, or a routing sink kept failing.
public struct DeadLetterEvent: Sendable, Hashable, Codable {
    /// The original event. For a message that could not be decoded it is a stand-in with the
    /// original subject, whose payload is `{"rawBase64": …}`.
    public var event: Event
    /// Why it was dead-lettered.
    public var reason: String
    /// The subject it was published on.
    public var originalSubject: String
    /// How many delivery attempts were made.
    public var attempts: Int
    /// The durable consumer (or trigger) that gave up on it, if any.
    public var consumer: String?
    /// Its stream sequence, if it was stored.
    public var streamSequence: UInt64?
    /// The raw message bytes when they could not be decoded as an event.
    public var rawPayload: [UInt8]?
    /// When the first attempt failed, Unix milliseconds, if known.
    public var firstFailureAt: Int64?
    /// When it was dead-lettered, Unix milliseconds.
    public var deadLetteredAt: Int64

    /// Creates a dead letter.
    public init(
        event: Event,
        reason: String,
        attempts: Int,
        consumer: String? = nil,
        streamSequence: UInt64? = nil,
        rawPayload: [UInt8]? = nil,
        firstFailureAt: Int64? = nil,
        deadLetteredAt: Int64 = Event.currentTimestamp()
    ) {
        self.event = event
        self.reason = reason
        self.originalSubject = event.subject
        self.attempts = attempts
        self.consumer = consumer
        self.streamSequence = streamSequence
        self.rawPayload = rawPayload
        self.firstFailureAt = firstFailureAt
        self.deadLetteredAt = deadLetteredAt
    }

    /// A dead letter for bytes that are not an event.
    public static func undecodable(
        subject: String,
        raw: [UInt8],
        reason: String,
        attempts: Int,
        consumer: String?,
        streamSequence: UInt64?,
        messageID: String?,
        prefix: String
    ) -> DeadLetterEvent {
        let standIn = Event(
            id: messageID ?? "undecodable-\(streamSequence ?? 0)",
            subject: subject,
            category: Subjects.category(of: subject, prefix: prefix) ?? "",
            payload: .object(["rawBase64": .string(Base64.encode(raw))]),
            summary: "undecodable message"
        )
        return DeadLetterEvent(
            event: standIn,
            reason: reason,
            attempts: attempts,
            consumer: consumer,
            streamSequence: streamSequence,
            rawPayload: raw
        )
    }

    /// Metadata keys a dead letter carries when it travels as an event.
    public enum MetadataKey {
        /// Why it was dead-lettered.
        public static let reason = "dlq_reason"
        /// The original event id.
        public static let originalID = "dlq_original_id"
        /// The original subject.
        public static let originalSubject = "dlq_original_subject"
        /// Delivery attempts.
        public static let attempts = "dlq_attempts"
        /// The consumer or trigger that gave up.
        public static let consumer = "dlq_consumer"
        /// The original stream sequence.
        public static let sequence = "dlq_sequence"
        /// First failure time, Unix milliseconds.
        public static let firstFailureAt = "dlq_first_failure_at"
        /// Dead-letter time, Unix milliseconds.
        public static let deadLetteredAt = "dlq_dead_lettered_at"
        /// The original category.
        public static let originalCategory = "dlq_original_category"
    }

    /// The subject prefix of the dead letters of events under `eventPrefix`: `<eventPrefix>-dlq`.
    /// Dead-letter subjects lie outside `<eventPrefix>.>`, so no subscription to events ever
    /// receives a dead letter.
    public static func defaultSubjectPrefix(forEventPrefix eventPrefix: String) -> String {
        eventPrefix + "-dlq"
    }

    /// The dead-letter subject for `subject`: `<deadLetterPrefix>.<subject>`.
    public static func subject(for subject: String, deadLetterPrefix: String) -> String {
        "\(deadLetterPrefix).\(subject)"
    }

    /// This dead letter as an event on `<deadLetterPrefix>.<original subject>`: the original
    /// payload, the original metadata plus the `dlq_*` keys, and a deterministic id (from the
    /// original id and the consumer or trigger) so re-sending it never stores it twice, while
    /// letters of one event from different triggers stay distinct.
    public func asEvent(deadLetterPrefix: String) -> Event {
        var metadata = event.metadata
        metadata[MetadataKey.reason] = reason
        metadata[MetadataKey.originalID] = event.id
        metadata[MetadataKey.originalSubject] = originalSubject
        metadata[MetadataKey.attempts] = String(attempts)
        metadata[MetadataKey.deadLetteredAt] = String(deadLetteredAt)
        metadata[MetadataKey.originalCategory] = event.category
        if let consumer { metadata[MetadataKey.consumer] = consumer }
        if let streamSequence { metadata[MetadataKey.sequence] = String(streamSequence) }
        if let firstFailureAt { metadata[MetadataKey.firstFailureAt] = String(firstFailureAt) }
        return Event(
            id: "dlq-\(event.id)" + (consumer.map { "~\($0)" } ?? ""),
            subject: Self.subject(for: originalSubject, deadLetterPrefix: deadLetterPrefix),
            category: "dlq",
            eventType: event.eventType,
            version: event.version,
            payload: event.payload,
            summary: event.summary,
            source: event.source,
            timestamp: deadLetteredAt,
            metadata: metadata
        )
    }

    /// Reads a dead letter back from its event form; `nil` when `event` carries no `dlq_reason`.
    public init?(dlqEvent event: Event) {
        guard let reason = event.metadata[MetadataKey.reason],
            let originalSubject = event.metadata[MetadataKey.originalSubject]
        else { return nil }
        var metadata = event.metadata
        for key in [
            MetadataKey.reason, MetadataKey.originalID, MetadataKey.originalSubject, MetadataKey.attempts,
            MetadataKey.consumer, MetadataKey.sequence, MetadataKey.firstFailureAt, MetadataKey.deadLetteredAt,
            MetadataKey.originalCategory,
        ] { metadata[key] = nil }
        let original = Event(
            id: event.metadata[MetadataKey.originalID] ?? event.id,
            subject: originalSubject,
            category: event.metadata[MetadataKey.originalCategory] ?? "",
            eventType: event.eventType,
            version: event.version,
            payload: event.payload,
            summary: event.summary,
            source: event.source,
            timestamp: event.timestamp,
            metadata: metadata
        )
        self.init(
            event: original,
            reason: reason,
            attempts: Int(event.metadata[MetadataKey.attempts] ?? "") ?? 0,
            consumer: event.metadata[MetadataKey.consumer],
            streamSequence: UInt64(event.metadata[MetadataKey.sequence] ?? ""),
            firstFailureAt: Int64(event.metadata[MetadataKey.firstFailureAt] ?? ""),
            deadLetteredAt: Int64(event.metadata[MetadataKey.deadLetteredAt] ?? "") ?? event.timestamp
        )
    }
}

/// Receives dead letters.
public protocol DlqHandler: Sendable {
    /// Stores or forwards `letter`. Throwing means the letter was not taken: the caller keeps the
    /// original message and tries again later, so nothing is lost.
    func handle(_ letter: DeadLetterEvent) async throws
    /// The newest `limit` dead letters this handler knows of, oldest first.
    func list(limit: Int) async throws -> [DeadLetterEvent]
    /// How many dead letters this handler has taken.
    func count() async throws -> Int
}

/// Keeps dead letters in memory, the newest ``capacity`` of them.
///
/// It is idempotent per delivery: a letter for a delivery it already holds (same consumer and
/// stream sequence, or same consumer and event id when there is no sequence) is taken without
/// being stored twice. Dead-lettering is at least once — a consumer that lags past its ack wait
/// can see an expired or undecodable delivery again before the server learnt of the first
/// letter — and this keeps such a repeat from looking like a second failure.
public final class MemoryDlqHandler: DlqHandler {
    private struct State {
        var letters: Deque<DeadLetterEvent> = []
        var keys: Set<String> = []
        var total = 0
        var evicted = 0
    }

    /// Identifies the delivery a letter is about.
    private static func key(_ letter: DeadLetterEvent) -> String {
        let consumer = letter.consumer ?? ""
        return letter.streamSequence.map { "\(consumer)#\($0)" } ?? "\(consumer)@\(letter.event.id)"
    }

    /// How many dead letters are kept; older ones are dropped and counted in ``evicted``.
    public let capacity: Int
    private let state = Mutex(State())

    /// Creates a handler keeping at most `capacity` letters.
    public init(capacity: Int = 10_000) {
        self.capacity = max(1, capacity)
    }

    public func handle(_ letter: DeadLetterEvent) async throws {
        let key = Self.key(letter)
        state.withLock { state in
            guard state.keys.insert(key).inserted else { return }
            state.letters.append(letter)
            state.total += 1
            if state.letters.count > capacity {
                let dropped = state.letters.removeFirst()
                state.keys.remove(Self.key(dropped))
                state.evicted += 1
            }
        }
    }

    public func list(limit: Int) async throws -> [DeadLetterEvent] { letters(limit: limit) }

    public func count() async throws -> Int { state.withLock { $0.total } }

    /// The newest `limit` letters, oldest first.
    public func letters(limit: Int = .max) -> [DeadLetterEvent] {
        state.withLock { Array($0.letters.suffix(max(0, limit))) }
    }

    /// Letters dropped because more than ``capacity`` arrived.
    public var evicted: Int { state.withLock { $0.evicted } }
}
