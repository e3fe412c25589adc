/// A payload type bound to one event type, version, subject and schema — typically generated
/// from a `*.eventschema.json` file by the `EventSchemaPlugin` build-tool plugin.
///
/// Required schema fields are non-optional properties, so a value that breaks its schema cannot
/// be constructed; ``EventBus/publish(_:summary:source:metadata:)`` still checks the encoded
/// payload against ``schema`` (and the pipeline's registry, when it validates) before publishing.
public protocol TypedEvent: Codable, Sendable {
    /// The event type, e.g. `order.paid`.
    static var eventType: String { get }
    /// The schema version.
    static var version: Int { get }
    /// The subject category (`events.<category>.<topic>`).
    static var category: String { get }
    /// The subject topic.
    static var topic: String { get }
    /// The schema the payload satisfies.
    static var schema: EventSchema { get }
}

extension TypedEvent {
    /// An event carrying this payload on `<prefix>.<category>.<topic>`, checked against ``schema``.
    ///
    /// - Throws: ``CourierError/Code/validationFailed`` naming the field when the payload breaks
    ///   the schema, or the subject error.
    public func event(
        prefix: String = Subjects.defaultPrefix, summary: String = "", source: String, metadata: [String: String] = [:]
    )
        throws -> Event
    {
        let event = Event(
            subject: try Subjects.build(prefix: prefix, category: Self.category, topic: Self.topic),
            category: Self.category,
            eventType: Self.eventType,
            version: Self.version,
            payload: try JSONValue(encoding: self),
            summary: summary,
            source: source,
            metadata: metadata
        )
        try MemorySchemaRegistry.check(event, against: Self.schema)
        return event
    }

    /// Decodes the payload of `event`.
    ///
    /// - Throws: ``CourierError/Code/validationFailed`` when `event` is of another type or
    ///   version, or the payload does not decode.
    public init(from event: Event) throws {
        guard event.eventType == Self.eventType, event.version == Self.version else {
            throw CourierError(
                .validationFailed,
                "event \(event.id) is '\(event.eventType)' v\(event.version), not '\(Self.eventType)' v\(Self.version)",
                input: event.id
            )
        }
        self = try event.payload.decode(Self.self)
    }
}

extension SchemaRegistry {
    /// Registers the schema of a typed event.
    public func register<T: TypedEvent>(_ type: T.Type) throws {
        try register(T.schema)
    }
}

extension EventBus {
    /// Publishes a typed event on its own subject (validated against its schema first).
    @discardableResult
    public func publish<T: TypedEvent>(
        _ payload: T, summary: String = "", source: String, metadata: [String: String] = [:]
    )
        async throws -> Event
    {
        let event = try payload.event(
            prefix: pipeline.subjectPrefix, summary: summary, source: source, metadata: metadata)
        try await pipeline.publish(event)
        return event
    }
}
