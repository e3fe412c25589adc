import Synchronization

/// A JSON type a schema can require of a top-level payload field.
public struct JSONFieldType: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The type name as written in schema files.
    public let name: String

    private init(_ name: String) { self.name = name }

    /// A JSON string.
    public static let string = JSONFieldType("string")
    /// Any JSON number.
    public static let number = JSONFieldType("number")
    /// A number with an integral value.
    public static let integer = JSONFieldType("integer")
    /// `true` or `false`.
    public static let boolean = JSONFieldType("boolean")
    /// A JSON object.
    public static let object = JSONFieldType("object")
    /// A JSON array.
    public static let array = JSONFieldType("array")
    /// `null`.
    public static let null = JSONFieldType("null")

    /// Every type.
    public static let all: [JSONFieldType] = [.string, .number, .integer, .boolean, .object, .array, .null]

    /// The type named `name`.
    ///
    /// - Throws: ``CourierError/Code/invalidConfiguration`` for an unknown name.
    public init(named name: String) throws {
        guard let type = Self.all.first(where: { $0.name == name }) else {
            throw CourierError(
                .invalidConfiguration,
                "unknown JSON field type '\(name)'; expected one of \(Self.all.map(\.name).joined(separator: ", "))",
                input: name
            )
        }
        self = type
    }

    public init(from decoder: any Decoder) throws {
        try self.init(named: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(name)
    }

    /// Whether `value` is of this type (an integer is also a number).
    public func accepts(_ value: JSONValue) -> Bool {
        switch (name, value) {
        case ("string", .string), ("boolean", .bool), ("object", .object), ("array", .array), ("null", .null):
            true
        case ("number", .int), ("number", .double), ("integer", .int):
            true
        case ("integer", .double(let d)):
            Int64(exactly: d) != nil
        default:
            false
        }
    }

    public var description: String { name }
}

/// The schema of one version of one event type.
public struct EventSchema: Sendable, Hashable, Codable {
    /// The event type, for example `order.created`.
    public var eventType: String
    /// The version, 1 or more.
    public var version: Int
    /// Top-level payload fields every event must carry.
    public var requiredFields: [String]
    /// Declared JSON types of top-level fields, required or optional.
    public var fieldTypes: [String: JSONFieldType]
    /// What the event means.
    public var description: String

    /// Creates a schema.
    public init(
        eventType: String,
        version: Int,
        requiredFields: [String] = [],
        fieldTypes: [String: JSONFieldType] = [:],
        description: String = ""
    ) {
        self.eventType = eventType
        self.version = version
        self.requiredFields = requiredFields
        self.fieldTypes = fieldTypes
        self.description = description
    }
}

/// How two consecutive versions of a schema must relate.
public struct CompatibilityMode: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The mode name.
    public let name: String
    private init(_ name: String) { self.name = name }

    /// No constraint.
    public static let none = CompatibilityMode("none")
    /// The new version adds no required field (readers of the new version accept old events).
    public static let backward = CompatibilityMode("backward")
    /// The new version drops no required field (readers of the old version accept new events).
    public static let forward = CompatibilityMode("forward")
    /// Both: the same required fields, in any order.
    public static let full = CompatibilityMode("full")

    public var description: String { name }
}

/// Stores event schemas and validates typed events against them.
public protocol SchemaRegistry: Sendable {
    /// Registers a schema.
    ///
    /// - Throws: ``CourierError/Code/invalidConfiguration`` for an empty type or a version below 1;
    ///   ``CourierError/Code/validationFailed`` when the registry enforces a compatibility mode the
    ///   schema breaks.
    func register(_ schema: EventSchema) throws
    /// The schema of `eventType` version `version`.
    func get(eventType: String, version: Int) -> EventSchema?
    /// The newest registered version of `eventType`.
    func latestVersion(eventType: String) -> Int?
    /// Every registered type, sorted.
    func listTypes() -> [String]
    /// Checks `event` against its schema. Untyped events and unregistered types pass.
    ///
    /// - Throws: ``CourierError/Code/validationFailed`` naming the type, version and field.
    func validate(_ event: Event) throws
    /// Checks version `version` of `eventType` against the version registered before it.
    func checkCompatibility(eventType: String, version: Int, mode: CompatibilityMode) throws
}

extension SchemaRegistry {
    /// Checks `event` against `schema`.
    public static func check(_ event: Event, against schema: EventSchema) throws {
        let label = "event type '\(schema.eventType)' v\(schema.version)"
        func failure(_ field: String, _ reason: String) -> CourierError {
            CourierError(.validationFailed, "\(label): \(reason) (event \(event.id))", input: field)
        }
        guard case .object(let fields) = event.payload else {
            if schema.requiredFields.isEmpty { return }
            throw failure(
                schema.requiredFields[0],
                "payload must be a JSON object with fields \(schema.requiredFields), got \(event.payload.typeName)"
            )
        }
        for field in schema.requiredFields where fields[field] == nil {
            throw failure(field, "required field '\(field)' is missing")
        }
        for field in schema.fieldTypes.keys.sorted() {
            guard let value = fields[field], let type = schema.fieldTypes[field] else { continue }
            if !type.accepts(value) {
                throw failure(field, "field '\(field)' must be \(type), got \(value.typeName)")
            }
        }
    }
}

/// A thread-safe in-memory ``SchemaRegistry``.
///
/// With an enforced ``CompatibilityMode`` other than ``CompatibilityMode/none``, ``register(_:)``
/// rejects a version that breaks the mode against the version registered before it.
public final class MemorySchemaRegistry: SchemaRegistry {
    /// The mode ``register(_:)`` enforces.
    public let enforcedMode: CompatibilityMode
    private let schemas = Mutex<[String: [Int: EventSchema]]>([:])

    /// Creates an empty registry enforcing `mode` on registration.
    public init(enforcing mode: CompatibilityMode = .none) {
        self.enforcedMode = mode
    }

    public func register(_ schema: EventSchema) throws {
        guard !schema.eventType.isEmpty else {
            throw CourierError(.invalidConfiguration, "a schema's eventType must not be empty", input: "eventType")
        }
        guard schema.version >= 1 else {
            throw CourierError(
                .invalidConfiguration,
                "schema '\(schema.eventType)': version must be at least 1, got \(schema.version)",
                input: schema.eventType
            )
        }
        for field in schema.fieldTypes.keys where field.isEmpty {
            throw CourierError(.invalidConfiguration, "schema '\(schema.eventType)': empty field name", input: field)
        }
        try schemas.withLock { schemas in
            if enforcedMode != .none,
                let previous = Self.previous(of: schema.version, in: schemas[schema.eventType] ?? [:])
            {
                try Self.compare(previous: previous, next: schema, mode: enforcedMode)
            }
            schemas[schema.eventType, default: [:]][schema.version] = schema
        }
    }

    public func get(eventType: String, version: Int) -> EventSchema? {
        schemas.withLock { $0[eventType]?[version] }
    }

    public func latestVersion(eventType: String) -> Int? {
        schemas.withLock { $0[eventType]?.keys.max() }
    }

    public func listTypes() -> [String] {
        schemas.withLock { $0.keys.sorted() }
    }

    public func validate(_ event: Event) throws {
        guard event.isTyped else { return }
        let (schema, known) = schemas.withLock {
            ($0[event.eventType]?[event.version], $0[event.eventType]?.keys.sorted())
        }
        if let schema {
            try Self.check(event, against: schema)
        } else if let known {
            throw CourierError(
                .validationFailed,
                "event type '\(event.eventType)' has no schema for version \(event.version) (registered: \(known)) (event \(event.id))",
                input: event.eventType
            )
        }
    }

    public func checkCompatibility(eventType: String, version: Int, mode: CompatibilityMode) throws {
        let versions = schemas.withLock { $0[eventType] ?? [:] }
        guard let schema = versions[version] else {
            throw CourierError(.notFound, "no schema for '\(eventType)' version \(version)", input: eventType)
        }
        guard let previous = Self.previous(of: version, in: versions) else { return }
        try Self.compare(previous: previous, next: schema, mode: mode)
    }

    private static func previous(of version: Int, in versions: [Int: EventSchema]) -> EventSchema? {
        versions.keys.filter { $0 < version }.max().flatMap { versions[$0] }
    }

    private static func compare(previous: EventSchema, next: EventSchema, mode: CompatibilityMode) throws {
        let old = Set(previous.requiredFields)
        let new = Set(next.requiredFields)
        let label = "'\(next.eventType)' v\(next.version) against v\(previous.version)"
        let added = new.subtracting(old).sorted()
        let dropped = old.subtracting(new).sorted()
        if mode == .backward || mode == .full, let field = added.first {
            throw CourierError(
                .validationFailed, "\(mode) compatibility broken for \(label): adds required field '\(field)'",
                input: field)
        }
        if mode == .forward || mode == .full, let field = dropped.first {
            throw CourierError(
                .validationFailed, "\(mode) compatibility broken for \(label): drops required field '\(field)'",
                input: field)
        }
        if mode != .none {
            for field in old.intersection(new).sorted() {
                if let before = previous.fieldTypes[field], let after = next.fieldTypes[field], before != after {
                    throw CourierError(
                        .validationFailed,
                        "\(mode) compatibility broken for \(label): field '\(field)' changes type from \(before) to \(after)",
                        input: field
                    )
                }
            }
        }
    }
}
