public import CourierCore

/// An event already serialised for the wire: its subject, its bytes, and a cached 64-bit hash
/// of the subject that places it on a shard. The ingest hot path parses and hashes nothing.
///
/// A `RawEvent` is one reference to immutable storage, so handing it to another thread costs a
/// single reference-count operation.
///
/// ```swift
/// let raw = RawEvent(subject: "events.market.tick", bytes: Array(json.utf8))
/// try ingest.ingestRaw(raw)
/// ```
public struct RawEvent: Sendable, Hashable {
    private final class Storage: Sendable {
        let subject: String
        let bytes: [UInt8]
        let hash: UInt64
        let timestamp: Int64
        /// Whether the subject passes ``Subjects/validate(_:)``, checked once at creation.
        let subjectIsValid: Bool

        init(subject: String, bytes: [UInt8], hash: UInt64, timestamp: Int64) {
            self.subject = subject
            self.bytes = bytes
            self.hash = hash
            self.timestamp = timestamp
            self.subjectIsValid = Subjects.isValid(subject)
        }
    }

    private let storage: Storage

    /// The subject the event is published on.
    public var subject: String { storage.subject }
    /// The serialised event (for events built from `Event`, its wire JSON).
    public var bytes: [UInt8] { storage.bytes }
    /// The xxHash64 of the subject, or the partition key given at creation.
    public var hash: UInt64 { storage.hash }
    /// When the event was created, Unix milliseconds (orders merged polls by time).
    public var timestamp: Int64 { storage.timestamp }
    /// Whether the subject is one events can be published on (checked once, at creation; the
    /// ingest bus refuses events whose subject is not).
    public var hasValidSubject: Bool { storage.subjectIsValid }

    /// An event of `bytes` on `subject`; `hash` defaults to the xxHash64 of the subject, so events
    /// of one subject share a shard and keep their order. Pass your own hash to partition by
    /// another key (all events with one key still keep their order).
    public init(subject: String, bytes: [UInt8], hash: UInt64? = nil, timestamp: Int64 = Event.currentTimestamp()) {
        storage = Storage(subject: subject, bytes: bytes, hash: hash ?? XXHash64.hash(subject), timestamp: timestamp)
    }

    /// `event` in its wire JSON form.
    public init(_ event: Event) {
        self.init(subject: event.subject, bytes: event.wireJSON(), timestamp: event.timestamp)
    }

    /// The event these bytes encode, when they are event wire JSON.
    ///
    /// - Throws: `CourierError/Code/invalidJSON` or `CourierError/Code/invalidEvent`.
    public func decoded() throws -> Event { try Event(wireJSON: bytes) }

    public static func == (lhs: RawEvent, rhs: RawEvent) -> Bool {
        lhs.storage === rhs.storage
            || (lhs.hash == rhs.hash && lhs.timestamp == rhs.timestamp && lhs.subject == rhs.subject
                && lhs.bytes == rhs.bytes)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(storage.hash)
        hasher.combine(storage.bytes)
    }
}
