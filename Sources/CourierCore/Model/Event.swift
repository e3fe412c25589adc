#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// An event: what Courier publishes, stores and delivers.
///
/// The JSON wire form is camelCase and compatible with the a3s-event format, so a Rust a3s service
/// and a Courier service can share one stream:
///
/// ```json
/// {"id":"evt-…","subject":"events.market.forex","category":"market","eventType":"","version":1,
///  "payload":{"rate":7.35},"summary":"EUR/USD","source":"reuters","timestamp":1700000000000,"metadata":{}}
/// ```
///
/// Documents without `eventType` or `version` (written by older a3s-event releases) decode as untyped
/// (`""`) version 1; unknown members are ignored.
public struct Event: Sendable, Hashable {
    /// A unique id, `"evt-"` followed by a lowercase UUID v4. It is also the default dedupe id.
    public var id: String
    /// The full dotted subject, for example `events.market.forex`.
    public var subject: String
    /// The category: the token after the subject prefix.
    public var category: String
    /// The schema type name, `""` when the event is untyped.
    public var eventType: String
    /// The schema version, 1 or more.
    public var version: Int
    /// The payload.
    public var payload: JSONValue
    /// A one-line human summary.
    public var summary: String
    /// The producer that emitted the event.
    public var source: String
    /// When the event was created, in milliseconds since the Unix epoch.
    public var timestamp: Int64
    /// Free-form string metadata (trace context, routing hops, dead-letter reasons, …).
    public var metadata: [String: String]

    /// Creates an event with every field given.
    public init(
        id: String = Event.newID(),
        subject: String,
        category: String,
        eventType: String = "",
        version: Int = 1,
        payload: JSONValue = .null,
        summary: String = "",
        source: String = "",
        timestamp: Int64 = Event.currentTimestamp(),
        metadata: [String: String] = [:]
    ) {
        self.id = id
        self.subject = subject
        self.category = category
        self.eventType = eventType
        self.version = version
        self.payload = payload
        self.summary = summary
        self.source = source
        self.timestamp = timestamp
        self.metadata = metadata
    }

    /// Creates an event on `<prefix>.<category>.<topic>`, validating the subject.
    ///
    /// - Throws: ``CourierError`` (``CourierError/Code/invalidSubject``) naming the bad token.
    public init(
        prefix: String = Subjects.defaultPrefix,
        category: String,
        topic: String,
        eventType: String = "",
        version: Int = 1,
        payload: JSONValue = .null,
        summary: String = "",
        source: String = "",
        metadata: [String: String] = [:]
    ) throws {
        self.init(
            subject: try Subjects.build(prefix: prefix, category: category, topic: topic),
            category: category,
            eventType: eventType,
            version: version,
            payload: payload,
            summary: summary,
            source: source,
            metadata: metadata
        )
    }

    /// Whether the event carries a schema type.
    public var isTyped: Bool { !eventType.isEmpty }

    /// Decodes the payload as `T`.
    public func decodePayload<T: Decodable>(_ type: T.Type = T.self) throws -> T {
        try payload.decode(T.self)
    }

    /// Checks the envelope rules every provider enforces before publishing: a non-empty id, a valid
    /// subject and a version of at least 1.
    public func validate() throws {
        try validate(subjectKnownValid: false)
    }

    /// ``validate()``, skipping the subject's check when the caller already checked this very
    /// subject: a batch of events on one subject checks it once.
    package func validate(subjectKnownValid: Bool) throws {
        guard !id.isEmpty else {
            throw CourierError(.invalidEvent, "event id must not be empty (subject '\(subject)')", input: subject)
        }
        if !subjectKnownValid { try Subjects.validate(subject) }
        guard version >= 1 else {
            throw CourierError(.invalidEvent, "event \(id): version must be at least 1, got \(version)", input: id)
        }
    }
}

// MARK: - Ids and time

extension Event {
    /// A new event id: `"evt-"` and a lowercase RFC 4122 version 4 UUID. The random bits come
    /// from the kernel's generator, read 4 KiB at a time.
    public static func newID() -> String {
        var bytes = RandomPool.next128()
        return withUnsafeMutableBytes(of: &bytes) { raw in
            raw[6] = (raw[6] & 0x0F) | 0x40
            raw[8] = (raw[8] & 0x3F) | 0x80
            return String(unsafeUninitializedCapacity: 40) { text in
                let hex: StaticString = "0123456789abcdef"
                return hex.withUTF8Buffer { digits in
                    for (i, byte) in "evt-".utf8.enumerated() { text[i] = byte }
                    var at = 4
                    for i in 0..<16 {
                        if i == 4 || i == 6 || i == 8 || i == 10 {
                            text[at] = UInt8(ascii: "-")
                            at += 1
                        }
                        text[at] = digits[Int(raw[i] >> 4)]
                        text[at + 1] = digits[Int(raw[i] & 0x0F)]
                        at += 2
                    }
                    return at
                }
            }
        }
    }

    /// The current time in milliseconds since the Unix epoch.
    public static func currentTimestamp() -> Int64 {
        WallClock.nowNanoseconds() / 1_000_000
    }
}

// MARK: - Wire form

extension Event {
    /// The JSON wire form.
    public func wireJSON() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        writeWireJSON(into: &out)
        return out
    }

    /// The size in bytes of ``wireJSON()``, counted without writing it.
    public var wireSize: Int {
        // `{` `}`, ten `"name":` members and the nine commas between them.
        var size = 2 + 9 + 10 * 3
        size += "idsubjectcategoryeventTypeversionpayloadsummarysourcetimestampmetadata".utf8.count
        size += JSONWriter.size(ofString: id) + JSONWriter.size(ofString: subject)
        size += JSONWriter.size(ofString: category) + JSONWriter.size(ofString: eventType)
        size += JSONWriter.size(ofInt: Int64(version)) + JSONWriter.size(of: payload)
        size += JSONWriter.size(ofString: summary) + JSONWriter.size(ofString: source)
        size += JSONWriter.size(ofInt: timestamp)
        size += 2 + max(0, metadata.count - 1)
        for (key, value) in metadata { size += JSONWriter.size(ofString: key) + 1 + JSONWriter.size(ofString: value) }
        return size
    }

    /// Appends the JSON wire form to `out`, in the a3s-event field order. Each member name with
    /// its punctuation goes out as one fixed piece.
    public func writeWireJSON(into out: inout [UInt8]) {
        JSONWriter.writeRaw(Wire.id, into: &out)
        JSONWriter.writeString(id, into: &out)
        JSONWriter.writeRaw(Wire.subject, into: &out)
        JSONWriter.writeString(subject, into: &out)
        JSONWriter.writeRaw(Wire.category, into: &out)
        JSONWriter.writeString(category, into: &out)
        JSONWriter.writeRaw(Wire.eventType, into: &out)
        JSONWriter.writeString(eventType, into: &out)
        JSONWriter.writeRaw(Wire.version, into: &out)
        JSONWriter.writeInt(Int64(version), into: &out)
        JSONWriter.writeRaw(Wire.payload, into: &out)
        JSONWriter.write(payload, into: &out)
        JSONWriter.writeRaw(Wire.summary, into: &out)
        JSONWriter.writeString(summary, into: &out)
        JSONWriter.writeRaw(Wire.source, into: &out)
        JSONWriter.writeString(source, into: &out)
        JSONWriter.writeRaw(Wire.timestamp, into: &out)
        JSONWriter.writeInt(timestamp, into: &out)
        guard !metadata.isEmpty else {
            JSONWriter.writeRaw(Wire.emptyMetadataAndEnd, into: &out)
            return
        }
        JSONWriter.writeRaw(Wire.metadata, into: &out)
        out.append(UInt8(ascii: "{"))
        var first = true
        for (key, value) in JSONWriter.sortedMembers(metadata) {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            JSONWriter.writeString(key, into: &out)
            out.append(UInt8(ascii: ":"))
            JSONWriter.writeString(value, into: &out)
        }
        JSONWriter.writeRaw("}}", into: &out)
    }

    /// Decodes the JSON wire form.
    ///
    /// `id`, `subject`, `category` and `timestamp` are required; `eventType` defaults to `""`,
    /// `version` to 1, `payload` to `null`, `summary` and `source` to `""`, `metadata` to empty.
    ///
    /// - Throws: ``CourierError`` (``CourierError/Code/invalidJSON``) naming the offending member.
    // Inlinable so a caller's collection type is known where its bytes are read: a generic call
    // through the collection's witness table cost about a sixth of decoding a small event.
    @inlinable
    public init(wireJSON bytes: some Collection<UInt8>) throws {
        if let event = try bytes.withContiguousStorageIfAvailable({ try Event.decodeWire($0) }) {
            self = event
        } else {
            self = try Array(bytes).withUnsafeBufferPointer { try Event.decodeWire($0) }
        }
    }

    /// Decodes the wire form in `buffer`: ``init(wireJSON:)`` without the generic collection.
    @usableFromInline
    static func decodeWire(_ buffer: UnsafeBufferPointer<UInt8>) throws -> Event {
        if let event = Event.canonicalWire(buffer) { return event }
        let fields = try Event.scanWire(buffer, building: true)
        return Event(
            id: fields.id!,
            subject: fields.subject,
            category: fields.category!,
            eventType: fields.eventType,
            version: fields.version,
            payload: fields.payload,
            summary: fields.summary,
            source: fields.source,
            timestamp: fields.timestamp,
            metadata: fields.metadata
        )
    }

    /// The event, when `buffer` is laid out exactly as ``writeWireJSON(into:)`` writes it: every
    /// member, in its order, with no whitespace between tokens. Member names are then matched as
    /// fixed pieces rather than scanned and looked up, which halves the cost of decoding what
    /// Courier itself published. `nil` at the first difference, or on any error: the general
    /// scan then reads the document, and reports its errors. It accepts only documents the
    /// general scan accepts, and decodes them to the same event.
    package static func canonicalWire(_ buffer: UnsafeBufferPointer<UInt8>) -> Event? {
        var reader = JSONReader(buffer)
        /// The string after `piece`; nil when the input does not go on with `piece`.
        func string(after piece: StaticString) throws -> String? {
            reader.consume(piece) ? try reader.readString() : nil
        }
        /// The integer after `piece`; nil when the input does not go on with `piece` and one.
        func integer(after piece: StaticString) throws -> Int64? {
            reader.consume(piece) ? try reader.readNumber().intValue : nil
        }
        do {
            guard let id = try string(after: Wire.id), let subject = try string(after: Wire.subject),
                let category = try string(after: Wire.category), let eventType = try string(after: Wire.eventType),
                let number = try integer(after: Wire.version), let version = Int(exactly: number),
                reader.consume(Wire.payload)
            else { return nil }
            let payload = try reader.readValue()
            guard let summary = try string(after: Wire.summary), let source = try string(after: Wire.source),
                let timestamp = try integer(after: Wire.timestamp)
            else { return nil }
            var metadata: [String: String] = [:]
            if !reader.consume(Wire.emptyMetadataAndEnd) {
                guard reader.consume(Wire.metadata) else { return nil }
                try reader.readObject { reader, name in metadata[name] = try reader.readString() }
                guard reader.consume("}") else { return nil }
            }
            try reader.expectEnd()
            return Event(
                id: id, subject: subject, category: category, eventType: eventType, version: version,
                payload: payload, summary: summary, source: source, timestamp: timestamp, metadata: metadata)
        } catch {
            return nil
        }
    }

    /// Checks that `bytes` decode as an event that passes ``validate()``, without building it,
    /// and returns its subject. It accepts exactly the documents ``init(wireJSON:)`` accepts
    /// (both run one scan), so bytes it passed decode later without fail.
    ///
    /// - Parameter subjectHint: a string likely equal to the subject; when it is, it is returned
    ///   instead of a new copy.
    /// - Throws: ``CourierError`` with ``CourierError/Code/invalidJSON``, or the code
    ///   ``validate()`` throws.
    ///   `subjectHintIsValid` says the hint already passed ``Subjects/validate(_:)``, which is then
    ///   not run again for a subject equal to it.
    package static func checkWire(
        _ bytes: [UInt8], subjectHint: String? = nil, subjectHintIsValid: Bool = false
    ) throws -> String {
        let fields = try bytes.withUnsafeBufferPointer { try scanWire($0, building: false, subjectHint: subjectHint) }
        guard fields.idLength > 0 else {
            throw CourierError(
                .invalidEvent, "event id must not be empty (subject '\(fields.subject)')", input: fields.subject)
        }
        if !(subjectHintIsValid && fields.subject == subjectHint) { try Subjects.validate(fields.subject) }
        guard fields.version >= 1 else {
            throw CourierError(
                .invalidEvent, "event on '\(fields.subject)': version must be at least 1, got \(fields.version)",
                input: fields.subject)
        }
        return fields.subject
    }

    /// The members one scan of the wire form found. Only `subject`, `version`, `timestamp` and
    /// `idLength` are filled when the scan does not build the event.
    private struct WireFields {
        var id: String?
        var idLength = 0
        var subject = ""
        var category: String?
        var eventType = ""
        var version = 1
        var payload = JSONValue.null
        var summary = ""
        var source = ""
        var timestamp: Int64 = 0
        var metadata: [String: String] = [:]
    }

    /// The one scan behind ``init(wireJSON:)`` and ``checkWire(_:subjectHint:)``: the same
    /// members are required and the same types accepted whether or not it builds the values.
    private static func scanWire(
        _ buffer: UnsafeBufferPointer<UInt8>, building: Bool, subjectHint: String? = nil
    ) throws -> WireFields {
        var reader = JSONReader(buffer)
        var fields = WireFields()
        var found: (id: Bool, subject: Bool, category: Bool, timestamp: Bool) = (false, false, false, false)
        try reader.readObjectWithRawKeys { reader, keyBytes in
            var key: String { String(decoding: keyBytes, as: UTF8.self) }
            func text() throws -> String {
                do {
                    if building { return try reader.readString() }
                    _ = try reader.skipString()
                    return ""
                } catch {
                    throw Event.fieldError(key, "a string", error)
                }
            }
            switch Event.member(keyBytes) {
            case .id:
                do {
                    if building {
                        let id = try reader.readString()
                        fields.id = id
                        fields.idLength = id.utf8.count
                    } else {
                        fields.idLength = try reader.skipString()
                    }
                } catch {
                    throw Event.fieldError(key, "a string", error)
                }
                found.id = true
            case .subject:
                do {
                    fields.subject = try reader.readString(reusing: building ? nil : subjectHint)
                } catch {
                    throw Event.fieldError(key, "a string", error)
                }
                found.subject = true
            case .category:
                fields.category = try text()
                found.category = true
            case .eventType: fields.eventType = try reader.consumeNull() ? "" : try text()
            case .summary: fields.summary = try reader.consumeNull() ? "" : try text()
            case .source: fields.source = try reader.consumeNull() ? "" : try text()
            case .payload:
                if building { fields.payload = try reader.readValue() } else { try reader.skipValue() }
            case .version:
                if try reader.consumeNull() { break }
                guard let v = try? reader.readNumber().intValue, let int = Int(exactly: v) else {
                    throw Event.fieldError(key, "an integer", nil)
                }
                fields.version = int
            case .timestamp:
                guard let v = try? reader.readNumber().intValue else {
                    throw Event.fieldError(key, "an integer (Unix milliseconds)", nil)
                }
                fields.timestamp = v
                found.timestamp = true
            case .metadata:
                if try reader.consumeNull() { break }
                do {
                    if building {
                        try reader.readObject { reader, name in fields.metadata[name] = try reader.readString() }
                    } else {
                        try reader.readObject { reader, _ in _ = try reader.skipString() }
                    }
                } catch {
                    throw Event.fieldError(key, "an object of strings", error)
                }
            case .other:
                try reader.skipValue()
            }
        }
        try reader.expectEnd()
        guard found.id else { throw Event.missing("id") }
        guard found.subject else { throw Event.missing("subject") }
        guard found.category else { throw Event.missing("category") }
        guard found.timestamp else { throw Event.missing("timestamp") }
        return fields
    }

    /// The fixed pieces of the wire form, each member name with the punctuation before it, in
    /// the order ``writeWireJSON(into:)`` writes them and ``canonicalWire(_:)`` expects them.
    private enum Wire {
        static var id: StaticString { #"{"id":"# }
        static var subject: StaticString { #","subject":"# }
        static var category: StaticString { #","category":"# }
        static var eventType: StaticString { #","eventType":"# }
        static var version: StaticString { #","version":"# }
        static var payload: StaticString { #","payload":"# }
        static var summary: StaticString { #","summary":"# }
        static var source: StaticString { #","source":"# }
        static var timestamp: StaticString { #","timestamp":"# }
        static var metadata: StaticString { #","metadata":"# }
        /// Empty metadata and the end of the event.
        static var emptyMetadataAndEnd: StaticString { #","metadata":{}}"# }
    }

    /// The envelope members of the wire form.
    private enum Member {
        case id, subject, category, eventType, version, payload, summary, source, timestamp, metadata, other
    }

    /// Which member `key` names: cheaper than comparing it with every member name, and this
    /// runs for every member of every decoded event.
    @inline(__always)
    private static func member(_ bytes: UnsafeBufferPointer<UInt8>) -> Member {
        switch bytes.count {
        case 2: return bytes.equals("id") ? .id : .other
        case 6: return bytes.equals("source") ? .source : .other
        case 7:
            if bytes.equals("subject") { return .subject }
            if bytes.equals("payload") { return .payload }
            if bytes.equals("summary") { return .summary }
            return bytes.equals("version") ? .version : .other
        case 8: return bytes.equals("category") ? .category : (bytes.equals("metadata") ? .metadata : .other)
        case 9: return bytes.equals("eventType") ? .eventType : (bytes.equals("timestamp") ? .timestamp : .other)
        default: return .other
        }
    }

    private static func missing(_ field: String) -> CourierError {
        CourierError(.invalidJSON, "event JSON lacks required member '\(field)'", input: field)
    }

    private static func fieldError(_ field: String, _ expected: String, _ cause: (any Error)?) -> CourierError {
        let detail = (cause as? CourierError).map { ": \($0.message)" } ?? ""
        return CourierError(.invalidJSON, "event JSON member '\(field)' must be \(expected)\(detail)", input: field)
    }
}

// MARK: - Codable

extension Event: Codable {
    private enum CodingKeys: String, CodingKey {
        case id, subject, category, eventType, version, payload, summary, source, timestamp, metadata
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            id: try c.decode(String.self, forKey: .id),
            subject: try c.decode(String.self, forKey: .subject),
            category: try c.decode(String.self, forKey: .category),
            eventType: try c.decodeIfPresent(String.self, forKey: .eventType) ?? "",
            version: try c.decodeIfPresent(Int.self, forKey: .version) ?? 1,
            payload: try c.decodeIfPresent(JSONValue.self, forKey: .payload) ?? .null,
            summary: try c.decodeIfPresent(String.self, forKey: .summary) ?? "",
            source: try c.decodeIfPresent(String.self, forKey: .source) ?? "",
            timestamp: try c.decode(Int64.self, forKey: .timestamp),
            metadata: try c.decodeIfPresent([String: String].self, forKey: .metadata) ?? [:]
        )
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(subject, forKey: .subject)
        try c.encode(category, forKey: .category)
        try c.encode(eventType, forKey: .eventType)
        try c.encode(version, forKey: .version)
        try c.encode(payload, forKey: .payload)
        try c.encode(summary, forKey: .summary)
        try c.encode(source, forKey: .source)
        try c.encode(timestamp, forKey: .timestamp)
        try c.encode(metadata, forKey: .metadata)
    }
}
