public import Foundation

/// A `*.eventschema.json` file: one typed event, from which the generator writes a Swift struct
/// conforming to `TypedEvent` with its `EventSchema`.
///
/// ```json
/// {
///   "name": "OrderPaid", "eventType": "order.paid", "version": 1,
///   "category": "orders", "topic": "paid", "description": "An order was paid.",
///   "fields": {
///     "orderID": { "type": "string", "required": true, "description": "The order." },
///     "amountCents": { "type": "integer", "required": true },
///     "tags": { "type": "array", "items": "string" }
///   }
/// }
/// ```
public struct EventSchemaFile: Sendable, Hashable {
    /// One payload field.
    public struct Field: Sendable, Hashable {
        /// The JSON name, also the Swift property name.
        public var name: String
        /// `string`, `integer`, `number`, `boolean`, `object` or `array`.
        public var type: String
        /// For arrays: the element type (not `array`).
        public var items: String?
        /// Whether the payload must contain it (a non-optional property).
        public var required: Bool
        /// Its documentation.
        public var description: String
    }

    /// The Swift type name.
    public var name: String
    /// The event type.
    public var eventType: String
    /// The schema version (≥ 1).
    public var version: Int
    /// The subject category.
    public var category: String
    /// The subject topic.
    public var topic: String
    /// The type's documentation.
    public var description: String
    /// `public` (default) or `internal`.
    public var access: String
    /// The fields: required ones first, then optional ones, each in the order of their names.
    public var fields: [Field]

    static let scalarTypes: [String: String] = [
        "string": "String", "integer": "Int", "number": "Double", "boolean": "Bool", "object": "JSONValue",
    ]
    static let keys: Set<String> = [
        "name", "eventType", "version", "category", "topic", "description", "access", "fields",
    ]
    static let fieldKeys: Set<String> = ["type", "items", "required", "description"]

    private struct RawFile: Decodable {
        var name: String
        var eventType: String
        var version: Int
        var category: String
        var topic: String
        var description: String?
        var access: String?
        var fields: [String: RawField]
    }

    private struct RawField: Decodable {
        var type: String
        var items: String?
        var required: Bool?
        var description: String?
    }

    /// Parses and validates a schema file's bytes; `source` names the file in errors.
    public init(json: Data, source: String) throws {
        let root: Any
        do {
            root = try JSONSerialization.jsonObject(with: json)
        } catch {
            throw EventSchemaError(source: source, "is not valid JSON: \(error.localizedDescription)")
        }
        guard let object = root as? [String: Any] else {
            throw EventSchemaError(source: source, "must be a JSON object")
        }
        if let unknown = Set(object.keys).subtracting(Self.keys).sorted().first {
            throw EventSchemaError(source: source, "unknown key '\(unknown)'")
        }
        for case let (field, spec as [String: Any]) in (object["fields"] as? [String: Any]) ?? [:] {
            if let unknown = Set(spec.keys).subtracting(Self.fieldKeys).sorted().first {
                throw EventSchemaError(source: source, "field '\(field)': unknown key '\(unknown)'")
            }
        }
        let raw: RawFile
        do {
            raw = try JSONDecoder().decode(RawFile.self, from: json)
        } catch let DecodingError.keyNotFound(key, context) {
            let path = (context.codingPath.map(\.stringValue) + [key.stringValue]).joined(separator: ".")
            throw EventSchemaError(source: source, "'\(path)' is missing")
        } catch let DecodingError.typeMismatch(type, context) {
            throw EventSchemaError(
                source: source,
                "'\(context.codingPath.map(\.stringValue).joined(separator: "."))' must be \(Self.jsonName(type))")
        } catch {
            throw EventSchemaError(source: source, "\(error)")
        }
        name = raw.name
        eventType = raw.eventType
        version = raw.version
        category = raw.category
        topic = raw.topic
        description = raw.description ?? ""
        access = raw.access ?? "public"
        guard version >= 1 else { throw EventSchemaError(source: source, "'version' must be ≥ 1") }
        guard Self.isIdentifier(name), name.first?.isUppercase == true else {
            throw EventSchemaError(
                source: source, "'name' \(name.debugDescription) must be a Swift type name (UpperCamelCase)")
        }
        guard !eventType.isEmpty, !eventType.contains(where: { $0.isWhitespace }) else {
            throw EventSchemaError(source: source, "'eventType' must be non-empty without whitespace")
        }
        for (key, token) in [("category", category), ("topic", topic)] {
            guard !token.isEmpty,
                token.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") })
            else {
                throw EventSchemaError(
                    source: source, "'\(key)' \(token.debugDescription) must be one subject token ([A-Za-z0-9_-])")
            }
        }
        guard access == "public" || access == "internal" else {
            throw EventSchemaError(source: source, "'access' must be \"public\" or \"internal\"")
        }
        guard !raw.fields.isEmpty else { throw EventSchemaError(source: source, "'fields' must not be empty") }
        // Required fields first, then optional ones, each alphabetically (JSON objects are
        // unordered): the memberwise initialiser reads `Type(required…, optional… = nil)`.
        let names = raw.fields.keys.sorted { a, b in
            let (ra, rb) = (raw.fields[a]!.required ?? false, raw.fields[b]!.required ?? false)
            return ra != rb ? ra : a < b
        }
        fields = try names.map { name in
            let spec = raw.fields[name]!
            let label = "field '\(name)'"
            guard Self.isIdentifier(name), name.first?.isLowercase == true || name.first == "_" else {
                throw EventSchemaError(
                    source: source, "\(label): the name must be a Swift property name (lowerCamelCase)")
            }
            guard spec.type == "array" || Self.scalarTypes[spec.type] != nil else {
                throw EventSchemaError(
                    source: source, "\(label): 'type' must be one of string, integer, number, boolean, object, array")
            }
            if spec.type == "array" {
                guard let items = spec.items, Self.scalarTypes[items] != nil else {
                    throw EventSchemaError(
                        source: source, "\(label): an array needs 'items': string, integer, number, boolean or object")
                }
            } else if spec.items != nil {
                throw EventSchemaError(source: source, "\(label): 'items' is only for arrays")
            }
            return Field(
                name: name, type: spec.type, items: spec.items, required: spec.required ?? false,
                description: spec.description ?? "")
        }
    }

    static func jsonName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type: "an integer"
        case is Bool.Type: "true or false"
        default: "an object"
        }
    }

    static let reserved: Set<String> = [
        "associatedtype", "class", "deinit", "enum", "extension", "func", "import", "init", "inout", "let", "operator",
        "protocol", "static", "struct", "subscript", "typealias", "var", "break", "case", "continue", "default",
        "defer",
        "do", "else", "fallthrough", "for", "guard", "if", "in", "repeat", "return", "switch", "where", "while", "as",
        "catch", "false", "is", "nil", "rethrows", "super", "self", "Self", "throw", "throws", "true", "try", "Any",
        "public", "private", "internal", "fileprivate", "open", "eventType", "version", "category", "topic", "schema",
    ]

    static func isIdentifier(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first, !reserved.contains(text) else { return false }
        let head = CharacterSet.letters.union(CharacterSet(charactersIn: "_"))
        let tail = head.union(.decimalDigits)
        return head.contains(first) && text.unicodeScalars.allSatisfy { tail.contains($0) && $0.isASCII }
    }
}

/// A schema file the generator cannot use, naming the file and the problem.
public struct EventSchemaError: Error, CustomStringConvertible, Sendable {
    /// The file.
    public var source: String
    /// What is wrong.
    public var message: String

    init(source: String, _ message: String) {
        self.source = source
        self.message = message
    }

    public var description: String { "\(source): \(message)" }
}
