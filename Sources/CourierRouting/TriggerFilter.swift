#if Routing
public import CourierCore

/// Which events a trigger takes.
///
/// The a3s-event fields (`eventType`, `source`, `subjectPattern`, metadata `attributes`) and any
/// number of Knative-style ``FilterExpression``s are ANDed; an empty filter matches every event.
///
/// ```swift
/// let filter = TriggerFilter(eventType: "order.paid", subjectPattern: "events.orders.>",
///                            expressions: [.any([.prefix("source", "shop-"), .exact("tenant", "acme")])])
/// ```
public struct TriggerFilter: Sendable, Hashable, Codable {
    /// The event type, exactly.
    public var eventType: String?
    /// The source, exactly.
    public var source: String?
    /// A subject filter with NATS wildcards.
    public var subjectPattern: String?
    /// Metadata entries that must all be present with these exact values.
    public var attributes: [String: String]
    /// Expression filters, all of which must hold.
    public var expressions: [FilterExpression]

    /// Creates a filter.
    public init(
        eventType: String? = nil,
        source: String? = nil,
        subjectPattern: String? = nil,
        attributes: [String: String] = [:],
        expressions: [FilterExpression] = []
    ) {
        self.eventType = eventType
        self.source = source
        self.subjectPattern = subjectPattern
        self.attributes = attributes
        self.expressions = expressions
    }

    /// Checks the filter; the error says what is wrong.
    ///
    /// - Throws: `CourierError/Code/invalidFilter`.
    public func validate() throws {
        if let subjectPattern {
            do {
                _ = try SubjectFilter(subjectPattern)
            } catch var error as CourierError {
                error.message = "subjectPattern: \(error.message)"
                throw error
            }
        }
        if eventType?.isEmpty == true {
            throw CourierError(
                .invalidFilter, "eventType must not be empty (omit it to match any type)", input: "eventType")
        }
        if source?.isEmpty == true {
            throw CourierError(
                .invalidFilter, "source must not be empty (omit it to match any source)", input: "source")
        }
        for key in attributes.keys where key.isEmpty {
            throw CourierError(.invalidFilter, "attribute names must not be empty", input: "attributes")
        }
        for expression in expressions { try expression.validate() }
    }

    /// Whether `event` passes every condition.
    public func matches(_ event: Event) -> Bool {
        matches(event, subject: compiledSubject)
    }

    /// Whether `event` passes every condition, with the subject pattern already parsed.
    func matches(_ event: Event, subject compiled: SubjectFilter?) -> Bool {
        if let eventType, event.eventType != eventType { return false }
        if let source, event.source != source { return false }
        if let compiled, !compiled.matches(event.subject) { return false }
        for (key, value) in attributes where event.metadata[key] != value { return false }
        return expressions.allSatisfy { $0.matches(event) }
    }

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case eventType, source, subjectPattern, attributes, expressions
    }

    /// Decodes a filter, rejecting unknown keys (a misspelt field must not widen a trigger).
    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(in: decoder, allowed: CodingKeys.allCases, context: "filter")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        eventType = try c.decodeIfPresent(String.self, forKey: .eventType)
        source = try c.decodeIfPresent(String.self, forKey: .source)
        subjectPattern = try c.decodeIfPresent(String.self, forKey: .subjectPattern)
        attributes = try c.decodeIfPresent([String: String].self, forKey: .attributes) ?? [:]
        expressions = try c.decodeIfPresent([FilterExpression].self, forKey: .expressions) ?? []
    }

    /// The parsed subject pattern (valid once ``validate()`` passed).
    var compiledSubject: SubjectFilter? { subjectPattern.flatMap { try? SubjectFilter($0) } }
}

/// A Knative-style filter expression over event attributes.
///
/// Attribute names are CloudEvents names or Courier fields: `id`, `type` (the CloudEvents type:
/// the event type, or `a3s.event` when untyped), `eventType`, `source`, `subject`, `category`
/// (or `a3scategory`), `version` (or `a3sversion`), `summary` (or `a3ssummary`), `specversion`,
/// `datacontenttype`; any other name is looked up in the event's metadata (extensions such as
/// `traceparent` travel there).
public indirect enum FilterExpression: Sendable, Hashable {
    /// The attribute equals the value.
    case exact(String, String)
    /// The attribute starts with the value.
    case prefix(String, String)
    /// The attribute ends with the value.
    case suffix(String, String)
    /// Every expression holds (an empty list is invalid).
    case all([FilterExpression])
    /// At least one expression holds (an empty list is invalid).
    case any([FilterExpression])
    /// The expression does not hold.
    case not(FilterExpression)

    /// Checks the expression; the error says what is wrong.
    public func validate() throws {
        switch self {
        case .exact(let attribute, _), .prefix(let attribute, _), .suffix(let attribute, _):
            guard !attribute.isEmpty else {
                throw CourierError(.invalidFilter, "a filter expression needs an attribute name", input: "attribute")
            }
        case .all(let expressions), .any(let expressions):
            guard !expressions.isEmpty else {
                throw CourierError(.invalidFilter, "'all' and 'any' need at least one expression", input: "expressions")
            }
            for expression in expressions { try expression.validate() }
        case .not(let expression):
            try expression.validate()
        }
    }

    /// Whether `event` satisfies the expression.
    public func matches(_ event: Event) -> Bool {
        switch self {
        case .exact(let attribute, let value): return Self.attribute(attribute, of: event) == value
        case .prefix(let attribute, let value): return Self.attribute(attribute, of: event)?.hasPrefix(value) ?? false
        case .suffix(let attribute, let value): return Self.attribute(attribute, of: event)?.hasSuffix(value) ?? false
        case .all(let expressions): return expressions.allSatisfy { $0.matches(event) }
        case .any(let expressions): return expressions.contains { $0.matches(event) }
        case .not(let expression): return !expression.matches(event)
        }
    }

    /// The value of attribute `name` of `event`, `nil` when it has none.
    public static func attribute(_ name: String, of event: Event) -> String? {
        switch name {
        case "id": event.id
        case "type": event.eventType.isEmpty ? "a3s.event" : event.eventType
        case "eventType", "eventtype", "a3seventtype": event.eventType
        case "source": event.source
        case "subject": event.subject
        case "category", "a3scategory": event.category
        case "version", "a3sversion": String(event.version)
        case "summary", "a3ssummary": event.summary
        case "specversion": "1.0"
        case "datacontenttype": "application/json"
        default: event.metadata[name]
        }
    }
}

extension FilterExpression: Codable {
    /// Knative's JSON shape: `{"exact": {"type": "x"}}`, `{"prefix": {...}}`, `{"suffix": {...}}`,
    /// `{"all": [...]}`, `{"any": [...]}`, `{"not": {...}}`.
    private enum Key: String, CodingKey { case exact, prefix, suffix, all, any, not }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        guard container.allKeys.count == 1, let key = container.allKeys.first else {
            throw CourierError(
                .invalidFilter,
                "a filter expression has exactly one of exact, prefix, suffix, all, any, not; got \(container.allKeys.map(\.stringValue))",
                input: "expression"
            )
        }
        func pair() throws -> (String, String) {
            let map = try container.decode([String: String].self, forKey: key)
            guard map.count == 1, let entry = map.first else {
                throw CourierError(
                    .invalidFilter, "'\(key.stringValue)' takes exactly one attribute: value pair",
                    input: key.stringValue)
            }
            return entry
        }
        switch key {
        case .exact: self = .exact(try pair().0, try pair().1)
        case .prefix: self = .prefix(try pair().0, try pair().1)
        case .suffix: self = .suffix(try pair().0, try pair().1)
        case .all: self = .all(try container.decode([FilterExpression].self, forKey: key))
        case .any: self = .any(try container.decode([FilterExpression].self, forKey: key))
        case .not: self = .not(try container.decode(FilterExpression.self, forKey: key))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        switch self {
        case .exact(let a, let v): try container.encode([a: v], forKey: .exact)
        case .prefix(let a, let v): try container.encode([a: v], forKey: .prefix)
        case .suffix(let a, let v): try container.encode([a: v], forKey: .suffix)
        case .all(let e): try container.encode(e, forKey: .all)
        case .any(let e): try container.encode(e, forKey: .any)
        case .not(let e): try container.encode(e, forKey: .not)
        }
    }
}
#endif
