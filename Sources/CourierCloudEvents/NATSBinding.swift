#if CloudEvents
import CourierCore

/// How a CloudEvent travels in a NATS message.
public struct CloudEventMode: Sendable, Hashable, CustomStringConvertible {
    let isBinary: Bool

    private init(isBinary: Bool) {
        self.isBinary = isBinary
    }

    /// The JSON event format as the payload, `Content-Type: application/cloudevents+json`.
    public static let structured = CloudEventMode(isBinary: false)
    /// Every attribute as a `ce-<name>` header, the data as the payload.
    public static let binary = CloudEventMode(isBinary: true)

    /// `structured` or `binary`.
    public init?(named name: String) {
        switch name.lowercased() {
        case "structured": self = .structured
        case "binary": self = .binary
        default: return nil
        }
    }

    public var description: String { isBinary ? "binary" : "structured" }
}

/// The headers and payload of one NATS message carrying a CloudEvent.
public struct NATSCloudEventMessage: Sendable {
    /// Headers in order.
    public var headers: [(String, String)]
    /// The payload.
    public var payload: [UInt8]
}

/// The CloudEvents NATS protocol binding, structured and binary content modes.
///
/// Binary mode follows the HTTP binding's header rules: attribute `x` travels as header `ce-x`,
/// its canonical string percent-encoded (space, `"`, `%` and everything outside printable ASCII
/// as `%XX` of its UTF-8 bytes), and `datacontenttype` travels as `Content-Type`. On receipt the
/// mode is detected from `Content-Type` (case-insensitively): `application/cloudevents…` is
/// structured, anything else binary. Header names match case-insensitively.
public enum NATSBinding {
    /// The message for `event` in `mode`; the event is validated first.
    public static func encode(_ event: CloudEvent, mode: CloudEventMode) throws -> NATSCloudEventMessage {
        try event.validate()
        guard mode.isBinary else {
            return NATSCloudEventMessage(
                headers: [("Content-Type", CloudEventJSON.contentType + "; charset=utf-8")],
                payload: try CloudEventJSON.encode(event)
            )
        }
        var headers: [(String, String)] = [
            ("ce-specversion", percentEncode(event.specversion)),
            ("ce-id", percentEncode(event.id)),
            ("ce-source", percentEncode(event.source)),
            ("ce-type", percentEncode(event.type)),
        ]
        if let value = event.subject { headers.append(("ce-subject", percentEncode(value))) }
        if let value = event.time { headers.append(("ce-time", percentEncode(value.text))) }
        if let value = event.dataschema { headers.append(("ce-dataschema", percentEncode(value))) }
        for name in event.extensions.keys.sorted() {
            headers.append(("ce-\(name)", percentEncode(event.extensions[name]!.canonicalString)))
        }
        var payload: [UInt8] = []
        var contentType = event.datacontenttype
        switch event.data {
        case .json(let value):
            payload = value.jsonBytes()
            if contentType == nil { contentType = "application/json" }
        case .text(let text): payload = Array(text.utf8)
        case .binary(let bytes): payload = bytes
        case nil: break
        }
        if let contentType { headers.append(("Content-Type", contentType)) }
        return NATSCloudEventMessage(headers: headers, payload: payload)
    }

    /// The mode a message was sent in, from its `Content-Type` (header names compared
    /// case-insensitively).
    public static func mode(of headers: [String: String]) -> CloudEventMode {
        let contentType = header("content-type", in: headers)?.lowercased() ?? ""
        return contentType.hasPrefix("application/cloudevents") ? .structured : .binary
    }

    /// Reads a CloudEvent from a message's headers and payload.
    ///
    /// - Throws: `CourierError/Code/invalidCloudEvent` naming the attribute.
    public static func decode(headers: [String: String], payload: [UInt8]) throws -> CloudEvent {
        if mode(of: headers) == .structured {
            let contentType = header("content-type", in: headers)?.lowercased() ?? ""
            guard !contentType.hasPrefix(CloudEventJSON.batchContentType) else {
                throw CourierError(
                    .invalidCloudEvent, "the NATS binding carries single events, not batches", input: "content-type")
            }
            return try CloudEventJSON.decode(payload)
        }
        var attributes: [String: String] = [:]
        for (name, value) in headers {
            let lower = name.lowercased()
            guard lower.hasPrefix("ce-") else { continue }
            guard let decoded = percentDecode(value) else {
                throw CloudEventRules.invalid(
                    String(lower.dropFirst(3)), "header value is not valid percent-encoded UTF-8")
            }
            attributes[String(lower.dropFirst(3))] = decoded
        }
        guard attributes["specversion"] != nil else {
            throw CourierError(
                .invalidCloudEvent,
                "not a CloudEvent message: no ce-specversion header and no CloudEvents content type",
                input: "specversion"
            )
        }
        let contentType = header("content-type", in: headers)
        var event = CloudEvent(
            id: attributes["id"] ?? "",
            source: attributes["source"] ?? "",
            type: attributes["type"] ?? "",
            specversion: attributes["specversion"] ?? "",
            datacontenttype: contentType,
            dataschema: attributes["dataschema"],
            subject: attributes["subject"]
        )
        if let text = attributes["time"] { event.time = try CloudEventTime(rfc3339: text) }
        for (name, value) in attributes where !CloudEvent.coreAttributes.contains(name) {
            event.extensions[name] = .string(value)
        }
        if !payload.isEmpty {
            if CloudEventJSON.isJSON(contentType) {
                do {
                    event.data = .json(try JSONValue(parsing: payload))
                } catch {
                    throw CloudEventRules.invalid(
                        "data", "content type \(contentType ?? "application/json") but the payload is not JSON")
                }
            } else if (contentType ?? "").lowercased().hasPrefix("text/"),
                let text = String(validating: payload, as: UTF8.self)
            {
                event.data = .text(text)
            } else {
                event.data = .binary(payload)
            }
        }
        try event.validate()
        return event
    }

    static func header(_ lowercasedName: String, in headers: [String: String]) -> String? {
        if let value = headers[lowercasedName] { return value }
        return headers.first { $0.key.lowercased() == lowercasedName }?.value
    }

    /// Percent-encodes space, `"`, `%` and every byte outside printable ASCII.
    public static func percentEncode(_ text: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for byte in text.utf8 {
            if byte <= 0x20 || byte >= 0x7F || byte == 0x22 || byte == 0x25 {
                out += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
            } else {
                out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes `%XX` sequences; `nil` when one is malformed or the result is not UTF-8.
    public static func percentDecode(_ text: String) -> String? {
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "%") {
                guard i + 2 < bytes.count,
                    let byte = Hex.decode(String(decoding: bytes[(i + 1)...(i + 2)], as: UTF8.self))?.first
                else {
                    return nil
                }
                out.append(byte)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(validating: out, as: UTF8.self)
    }
}
#endif
