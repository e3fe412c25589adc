#if CloudEvents
public import CourierCore

/// Lossless conversion between Courier `Event`s and CloudEvents.
///
/// | Event | CloudEvent |
/// | --- | --- |
/// | `id`, `source`, `subject` | `id`, `source`, `subject` (an empty source is written as `/` with `a3snosource: true`) |
/// | `eventType` | `type`; an untyped event has type `a3s.event` |
/// | `timestamp` | `time` (UTC, millisecond precision) |
/// | `payload` | `data` (`application/json`; absent when the payload is `null`) |
/// | `category`, `version`, `summary` | extensions `a3scategory`, `a3sversion`, `a3ssummary` |
/// | `metadata["traceparent"]`, `metadata["tracestate"]` | the distributed-tracing extensions `traceparent`, `tracestate` |
/// | the rest of `metadata` | extension `a3smetadata`, a JSON object text |
///
/// Reading also accepts `a3seventtype` (the event type when it differs from `type`) and
/// `a3stimestamp` (Unix milliseconds), as a3s-event writes them.
public enum CloudEventConversion {
    /// The CloudEvent type of untyped events.
    public static let untypedType = "a3s.event"
    /// Metadata keys that travel as top-level CloudEvents extensions (W3C trace context).
    public static let traceKeys = ["traceparent", "tracestate"]
}

extension CloudEvent {
    /// The CloudEvent for `event` (see ``CloudEventConversion``).
    public init(event: Event) {
        var extensions: [String: CloudEventExtension] = [
            "a3scategory": .string(event.category),
            "a3sversion": .integer(Int32(clamping: event.version)),
        ]
        if !event.summary.isEmpty { extensions["a3ssummary"] = .string(event.summary) }
        if event.source.isEmpty { extensions["a3snosource"] = .boolean(true) }
        if event.eventType == CloudEventConversion.untypedType { extensions["a3seventtype"] = .string(event.eventType) }
        var metadata = event.metadata
        for key in CloudEventConversion.traceKeys {
            if let value = metadata.removeValue(forKey: key) { extensions[key] = .string(value) }
        }
        if !metadata.isEmpty {
            extensions["a3smetadata"] = .string(JSONValue.object(metadata.mapValues { .string($0) }).description)
        }
        self.init(
            id: event.id,
            source: event.source.isEmpty ? "/" : event.source,
            type: event.eventType.isEmpty ? CloudEventConversion.untypedType : event.eventType,
            datacontenttype: event.payload.isNull ? nil : "application/json",
            subject: event.subject,
            time: CloudEventTime(unixMilliseconds: event.timestamp),
            data: event.payload.isNull ? nil : .json(event.payload),
            extensions: extensions
        )
    }
}

extension Event {
    /// The event for `cloudEvent`. Events that did not come from Courier or a3s-event get
    /// category `a3scategory` or `cloudevents`, and subject `cloudEvent.subject` when it is a
    /// valid subject under `prefix`, else `<prefix>.<category>.<type>` with the type's
    /// characters made subject-safe.
    ///
    /// - Throws: `CourierError/Code/invalidCloudEvent` when an `a3s*` extension is malformed.
    public init(cloudEvent: CloudEvent, prefix: String = Subjects.defaultPrefix) throws {
        var extensions = cloudEvent.extensions
        func take(_ name: String) -> CloudEventExtension? { extensions.removeValue(forKey: name) }
        let category = take("a3scategory")?.canonicalString ?? "cloudevents"
        var version = 1
        if let value = take("a3sversion") {
            guard let number = Int(value.canonicalString) else {
                throw CourierError(
                    .invalidCloudEvent, "extension 'a3sversion' must be an integer, got '\(value)'", input: "a3sversion"
                )
            }
            version = number
        }
        let summary = take("a3ssummary")?.canonicalString ?? ""
        let noSource = take("a3snosource")?.canonicalString == "true"
        let explicitType = take("a3seventtype")?.canonicalString
        var timestamp = cloudEvent.time?.unixMilliseconds ?? Event.currentTimestamp()
        if let value = take("a3stimestamp") {
            guard let millis = Int64(value.canonicalString) else {
                throw CourierError(
                    .invalidCloudEvent, "extension 'a3stimestamp' must be an integer, got '\(value)'",
                    input: "a3stimestamp")
            }
            timestamp = millis
        }
        var metadata: [String: String] = [:]
        if let value = take("a3smetadata") {
            guard case .object(let object) = try? JSONValue(parsing: value.canonicalString) else {
                throw CourierError(
                    .invalidCloudEvent, "extension 'a3smetadata' must hold a JSON object", input: "a3smetadata")
            }
            for (key, entry) in object { metadata[key] = entry.stringValue ?? entry.description }
        }
        for key in CloudEventConversion.traceKeys {
            if let value = take(key) { metadata[key] = value.canonicalString }
        }
        // Any other extension survives in metadata under its own name.
        for (name, value) in extensions { metadata[name] = value.canonicalString }

        let eventType = explicitType ?? (cloudEvent.type == CloudEventConversion.untypedType ? "" : cloudEvent.type)
        let payload: JSONValue
        switch cloudEvent.data {
        case .json(let value): payload = value
        case .text(let text): payload = .string(text)
        case .binary(let bytes): payload = ["dataBase64": .string(Base64.encode(bytes))]
        case nil: payload = .null
        }
        let subject: String
        if let candidate = cloudEvent.subject, candidate.hasPrefix(prefix + "."),
            (try? Subjects.validate(candidate)) != nil
        {
            subject = candidate
        } else {
            let safeType = String(
                cloudEvent.type.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" })
            subject = "\(prefix).\(category).\(safeType.isEmpty ? "event" : safeType)"
        }
        self.init(
            id: cloudEvent.id,
            subject: subject,
            category: category,
            eventType: eventType,
            version: version,
            payload: payload,
            summary: summary,
            source: noSource ? "" : cloudEvent.source,
            timestamp: timestamp,
            metadata: metadata
        )
    }
}
#endif
