#if CloudEvents
public import CourierCore

/// A CloudEvents v1.0 event: context attributes, optional data, and typed extension attributes.
///
/// Build one, call ``validate()`` (the JSON format and bindings do it for you), and encode it with
/// ``CloudEventJSON`` or ``NATSBinding``. Attribute names and rules follow the CloudEvents 1.0
/// specification exactly; every violation is a `CourierError` with code
/// `CourierError/Code/invalidCloudEvent` naming the attribute.
///
/// ```swift
/// var event = CloudEvent(id: "A234-1234-1234", source: "/orders", type: "com.example.order.created")
/// event.data = .json(["order": "o-1001"])
/// let json = try CloudEventJSON.encode(event)
/// ```
public struct CloudEvent: Sendable, Hashable {
    /// The spec version; Courier reads and writes `"1.0"`.
    public var specversion: String
    /// Identifies the event; unique per source.
    public var id: String
    /// The context in which the event happened (a URI-reference).
    public var source: String
    /// The kind of event, reverse-DNS by convention.
    public var type: String
    /// The media type of ``data``.
    public var datacontenttype: String?
    /// The schema ``data`` adheres to (an absolute URI).
    public var dataschema: String?
    /// The subject of the event in the context of the source.
    public var subject: String?
    /// When the occurrence happened.
    public var time: CloudEventTime?
    /// The event payload.
    public var data: CloudEventData?
    /// Extension attributes by name.
    public var extensions: [String: CloudEventExtension]

    /// Creates an event with the required attributes.
    public init(
        id: String,
        source: String,
        type: String,
        specversion: String = "1.0",
        datacontenttype: String? = nil,
        dataschema: String? = nil,
        subject: String? = nil,
        time: CloudEventTime? = nil,
        data: CloudEventData? = nil,
        extensions: [String: CloudEventExtension] = [:]
    ) {
        self.specversion = specversion
        self.id = id
        self.source = source
        self.type = type
        self.datacontenttype = datacontenttype
        self.dataschema = dataschema
        self.subject = subject
        self.time = time
        self.data = data
        self.extensions = extensions
    }

    /// The names of the core context attributes (never usable as extension names).
    public static let coreAttributes: Set<String> = [
        "specversion", "id", "source", "type", "datacontenttype", "dataschema", "subject", "time", "data",
        "data_base64",
    ]
}

/// CloudEvent data: a JSON value, text, or bytes.
public enum CloudEventData: Sendable, Hashable {
    /// JSON data (for JSON media types), written as the JSON value itself.
    case json(JSONValue)
    /// Text data (for other text media types).
    case text(String)
    /// Binary data, written as `data_base64` in the JSON format.
    case binary([UInt8])
}

/// A typed extension attribute value.
public enum CloudEventExtension: Sendable, Hashable, CustomStringConvertible {
    /// A boolean.
    case boolean(Bool)
    /// A signed 32-bit integer.
    case integer(Int32)
    /// A string.
    case string(String)
    /// Bytes (base64 in text formats).
    case binary([UInt8])
    /// An absolute URI.
    case uri(String)
    /// A URI-reference.
    case uriReference(String)
    /// A timestamp.
    case timestamp(CloudEventTime)

    /// The canonical string encoding the spec defines for text formats and headers.
    public var canonicalString: String {
        switch self {
        case .boolean(let value): value ? "true" : "false"
        case .integer(let value): String(value)
        case .string(let value), .uri(let value), .uriReference(let value): value
        case .binary(let bytes): Base64.encode(bytes)
        case .timestamp(let time): time.text
        }
    }

    public var description: String { canonicalString }
}

/// An RFC 3339 timestamp. Two times are equal when they denote the same instant, whatever their
/// offsets and precisions; ``text`` keeps the original form.
public struct CloudEventTime: Sendable, Hashable, CustomStringConvertible {
    /// Seconds since the Unix epoch.
    public let seconds: Int64
    /// Nanoseconds within the second.
    public let nanoseconds: Int32
    /// The RFC 3339 text.
    public let text: String

    /// Parses RFC 3339 text (`2018-04-05T17:31:00Z`, `2018-04-05T18:31:00.123456789+01:00`).
    ///
    /// - Throws: `CourierError/Code/invalidCloudEvent` naming `attribute`.
    public init(rfc3339 text: String, attribute: String = "time") throws {
        guard let (seconds, nanoseconds) = RFC3339.parse(text) else {
            throw CourierError(
                .invalidCloudEvent, "attribute '\(attribute)' is not an RFC 3339 timestamp: '\(text)'", input: attribute
            )
        }
        self.seconds = seconds
        self.nanoseconds = nanoseconds
        self.text = text
    }

    /// The time of a Unix-millisecond timestamp, written in UTC with millisecond precision.
    public init(unixMilliseconds: Int64) {
        let seconds = unixMilliseconds >= 0 ? unixMilliseconds / 1000 : (unixMilliseconds - 999) / 1000
        let millis = unixMilliseconds - seconds * 1000
        self.seconds = seconds
        self.nanoseconds = Int32(millis * 1_000_000)
        self.text = RFC3339.format(seconds: seconds, milliseconds: Int(millis))
    }

    /// Milliseconds since the Unix epoch (sub-millisecond precision truncated).
    public var unixMilliseconds: Int64 { seconds * 1000 + Int64(nanoseconds / 1_000_000) }

    public static func == (lhs: CloudEventTime, rhs: CloudEventTime) -> Bool {
        lhs.seconds == rhs.seconds && lhs.nanoseconds == rhs.nanoseconds
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(seconds)
        hasher.combine(nanoseconds)
    }

    public var description: String { text }
}

/// RFC 3339 date-time parsing and formatting.
enum RFC3339 {
    /// Seconds since the epoch and nanoseconds, or `nil` for anything that is not a full RFC 3339
    /// date-time (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`).
    static func parse(_ text: String) -> (Int64, Int32)? {
        let b = Array(text.utf8)
        func digits(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= b.count else { return nil }
            var value = 0
            for i in from..<(from + count) {
                guard b[i] >= 0x30, b[i] <= 0x39 else { return nil }
                value = value * 10 + Int(b[i] - 0x30)
            }
            return value
        }
        guard b.count >= 20, let year = digits(0, 4), b[4] == UInt8(ascii: "-"), let month = digits(5, 2),
            b[7] == UInt8(ascii: "-"), let day = digits(8, 2), b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: "t"),
            let hour = digits(11, 2), b[13] == UInt8(ascii: ":"), let minute = digits(14, 2),
            b[16] == UInt8(ascii: ":"),
            let second = digits(17, 2)
        else { return nil }
        guard (1...12).contains(month), day >= 1, day <= daysIn(month, year), hour <= 23, minute <= 59, second <= 60
        else {
            return nil
        }
        var index = 19
        var nanos = 0
        if index < b.count, b[index] == UInt8(ascii: ".") {
            index += 1
            let start = index
            while index < b.count, b[index] >= 0x30, b[index] <= 0x39 { index += 1 }
            guard index > start else { return nil }
            for i in start..<min(index, start + 9) { nanos = nanos * 10 + Int(b[i] - 0x30) }
            for _ in min(index - start, 9)..<9 { nanos *= 10 }
        }
        guard index < b.count else { return nil }
        var offset = 0
        switch b[index] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            index += 1
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            let sign = b[index] == UInt8(ascii: "-") ? -1 : 1
            guard let offsetHours = digits(index + 1, 2), index + 3 < b.count, b[index + 3] == UInt8(ascii: ":"),
                let offsetMinutes = digits(index + 4, 2), offsetHours <= 23, offsetMinutes <= 59
            else { return nil }
            offset = sign * (offsetHours * 3600 + offsetMinutes * 60)
            index += 6
        default:
            return nil
        }
        guard index == b.count else { return nil }
        let days = daysFromCivil(year, month, day)
        let seconds = Int64(days) * 86_400 + Int64(hour * 3600 + minute * 60 + min(second, 59)) - Int64(offset)
        return (seconds, Int32(nanos))
    }

    static func format(seconds: Int64, milliseconds: Int) -> String {
        let days = Int(seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400)
        let secondsOfDay = Int(seconds - Int64(days) * 86_400)
        let (year, month, day) = civilFromDays(days)
        func pad(_ value: Int, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return
            "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(secondsOfDay / 3600, 2)):\(pad(secondsOfDay / 60 % 60, 2)):\(pad(secondsOfDay % 60, 2)).\(pad(milliseconds, 3))Z"
    }

    private static func daysIn(_ month: Int, _ year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Days since 1970-01-01 (Howard Hinnant's algorithm).
    private static func daysFromCivil(_ year: Int, _ month: Int, _ day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    private static func civilFromDays(_ days: Int) -> (Int, Int, Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }
}
#endif
