#if CloudEvents
public import CourierCore

/// The CloudEvents JSON event format (`application/cloudevents+json`) and batch format
/// (`application/cloudevents-batch+json`).
///
/// JSON data is written as the JSON value itself, never as a re-encoded string; text data for
/// other text media types as a string; bytes as `data_base64`. On reading, `null` attributes are
/// absent, `data` together with `data_base64` is invalid, and — so events written by a3s-event
/// services can be read — a non-standard nested `"extensions"` object is read as top-level
/// extension attributes.
public enum CloudEventJSON {
    /// The structured-mode media type.
    public static let contentType = "application/cloudevents+json"
    /// The batch media type.
    public static let batchContentType = "application/cloudevents-batch+json"

    // MARK: Encoding

    /// The JSON encoding of `event`, validated first.
    public static func encode(_ event: CloudEvent) throws -> [UInt8] {
        try encodeValue(event).jsonBytes()
    }

    /// The JSON value of `event`, validated first.
    public static func encodeValue(_ event: CloudEvent) throws -> JSONValue {
        try event.validate()
        var object: [String: JSONValue] = [
            "specversion": .string(event.specversion),
            "id": .string(event.id),
            "source": .string(event.source),
            "type": .string(event.type),
        ]
        if let value = event.datacontenttype { object["datacontenttype"] = .string(value) }
        if let value = event.dataschema { object["dataschema"] = .string(value) }
        if let value = event.subject { object["subject"] = .string(value) }
        if let value = event.time { object["time"] = .string(value.text) }
        switch event.data {
        case .json(let value): object["data"] = value
        case .text(let text): object["data"] = .string(text)
        case .binary(let bytes): object["data_base64"] = .string(Base64.encode(bytes))
        case nil: break
        }
        for (name, value) in event.extensions {
            switch value {
            case .boolean(let flag): object[name] = .bool(flag)
            case .integer(let number): object[name] = .int(Int64(number))
            default: object[name] = .string(value.canonicalString)
            }
        }
        return .object(object)
    }

    /// A batch: a JSON array of events.
    public static func encodeBatch(_ events: [CloudEvent]) throws -> [UInt8] {
        JSONValue.array(try events.map(encodeValue)).jsonBytes()
    }

    // MARK: Decoding

    /// Reads and validates one event.
    ///
    /// - Throws: `CourierError/Code/invalidCloudEvent` naming the attribute, or
    ///   `CourierError/Code/invalidJSON` for malformed JSON.
    public static func decode(_ bytes: some Collection<UInt8>) throws -> CloudEvent {
        try decode(value: JSONValue(parsing: bytes))
    }

    /// Reads and validates one event from a JSON value.
    public static func decode(value: JSONValue) throws -> CloudEvent {
        guard case .object(var object) = value else {
            throw CourierError(
                .invalidCloudEvent, "a CloudEvent must be a JSON object, got \(value.typeName)", input: "event")
        }
        if case .object(let nested)? = object["extensions"] {
            // a3s-event writes its extensions in a nested object: read them as top-level ones. It
            // also writes 64-bit integers there (a3stimestamp), which are kept as their text.
            object["extensions"] = nil
            for (name, value) in nested where object[name] == nil {
                if case .int(let number) = value, Int32(exactly: number) == nil {
                    object[name] = .string(String(number))
                } else {
                    object[name] = value
                }
            }
        }
        func string(_ name: String) throws -> String? {
            switch object[name] {
            case nil, .null?: return nil
            case .string(let text)?: return text
            case let other?: throw CloudEventRules.invalid(name, "must be a string, got \(other.typeName)")
            }
        }
        let hasData = object["data"].map { !$0.isNull } ?? false
        let hasBase64 = object["data_base64"].map { !$0.isNull } ?? false
        guard !(hasData && hasBase64) else {
            throw CloudEventRules.invalid("data", "'data' and 'data_base64' must not both be present")
        }
        var event = CloudEvent(
            id: try string("id") ?? "",
            source: try string("source") ?? "",
            type: try string("type") ?? "",
            specversion: try string("specversion") ?? "",
            datacontenttype: try string("datacontenttype"),
            dataschema: try string("dataschema"),
            subject: try string("subject")
        )
        if let text = try string("time") { event.time = try CloudEventTime(rfc3339: text) }
        if hasBase64 {
            guard let text = try string("data_base64"), let bytes = Base64.decode(text) else {
                throw CloudEventRules.invalid("data_base64", "is not valid base64")
            }
            event.data = .binary(bytes)
        } else if hasData, let value = object["data"] {
            event.data = data(value, contentType: event.datacontenttype)
        }
        for (name, value) in object where !CloudEvent.coreAttributes.contains(name) {
            switch value {
            case .null: continue
            case .bool(let flag): event.extensions[name] = .boolean(flag)
            case .string(let text): event.extensions[name] = .string(text)
            case .int(let number):
                guard let small = Int32(exactly: number) else {
                    throw CloudEventRules.invalid(name, "integer \(number) is outside the 32-bit range")
                }
                event.extensions[name] = .integer(small)
            case .double(let number):
                guard let small = Int32(exactly: number) else {
                    throw CloudEventRules.invalid(
                        name, "extension values must be booleans, 32-bit integers or strings, got \(number)")
                }
                event.extensions[name] = .integer(small)
            case .array, .object:
                throw CloudEventRules.invalid(
                    name, "extension values must be booleans, 32-bit integers or strings, got \(value.typeName)")
            }
        }
        try event.validate()
        return event
    }

    /// Reads and validates a batch.
    ///
    /// - Throws: `CourierError/Code/invalidCloudEvent` naming the element and the attribute.
    public static func decodeBatch(_ bytes: some Collection<UInt8>) throws -> [CloudEvent] {
        guard case .array(let elements) = try JSONValue(parsing: bytes) else {
            throw CourierError(.invalidCloudEvent, "a CloudEvents batch must be a JSON array", input: "batch")
        }
        return try elements.enumerated().map { index, element in
            do {
                return try decode(value: element)
            } catch let error as CourierError {
                throw CourierError(
                    error.code, "batch element \(index): \(error.message)", input: error.input, isRetryable: false)
            }
        }
    }

    /// Whether `contentType` is JSON (`application/json`, `text/json`, `…+json`), parameters ignored.
    public static func isJSON(_ contentType: String?) -> Bool {
        guard let contentType else { return true }
        let essence =
            contentType.split(separator: ";").first.map { String($0).trimmingCharacters(in: " \t").lowercased() } ?? ""
        return essence == "application/json" || essence == "text/json" || essence.hasSuffix("+json")
    }

    static func data(_ value: JSONValue, contentType: String?) -> CloudEventData {
        if isJSON(contentType) { return .json(value) }
        if case .string(let text) = value { return .text(text) }
        return .json(value)
    }
}

extension String {
    /// `self` without leading and trailing characters from `set`.
    func trimmingCharacters(in set: String) -> String {
        var scalars = Substring(self)
        while let first = scalars.first, set.contains(first) { scalars.removeFirst() }
        while let last = scalars.last, set.contains(last) { scalars.removeLast() }
        return String(scalars)
    }
}
#endif
