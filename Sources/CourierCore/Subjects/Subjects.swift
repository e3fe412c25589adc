/// Building and validating dotted subjects: `<prefix>.<category>.<topic>[.<more>]`.
///
/// A published subject is one or more non-empty tokens separated by `.`, with no whitespace or
/// control characters, no wildcard character (`*`, `>`) anywhere, and at most ``maximumLength``
/// bytes. Filters are ``SubjectFilter``.
public enum Subjects {
    /// The default subject prefix, `events`.
    public static let defaultPrefix = "events"

    /// The longest subject or filter accepted, in UTF-8 bytes. nats-server closes a connection
    /// whose protocol line exceeds its `max_control_line` (4 096 bytes by default), and a
    /// JetStream publish line also carries a reply subject and sizes; 1 024 bytes leaves room for
    /// both, on every provider alike.
    public static let maximumLength = 1024

    /// Checks that `subject` can be published to.
    ///
    /// - Throws: ``CourierError`` (``CourierError/Code/invalidSubject``) naming the subject (a long
    ///   one by its prefix and length) and the rule.
    public static func validate(_ subject: String) throws {
        guard !subject.isEmpty else { throw CourierError.invalidSubject(subject, "it is empty") }
        guard subject.utf8.count <= maximumLength else {
            throw CourierError.invalidSubject(subject, "it is longer than \(maximumLength) bytes")
        }
        var tokenLength = 0
        var position = 0
        for byte in subject.utf8 {
            position += 1
            switch byte {
            case UInt8(ascii: "."):
                guard tokenLength > 0 else {
                    throw CourierError.invalidSubject(subject, "empty token at character \(position)")
                }
                tokenLength = 0
            case UInt8(ascii: "*"), UInt8(ascii: ">"):
                throw CourierError.invalidSubject(
                    subject,
                    "wildcard '\(Character(Unicode.Scalar(byte)))' is not allowed in a published subject"
                )
            case 0...0x20, 0x7F:
                throw CourierError.invalidSubject(subject, "whitespace or control character at character \(position)")
            default:
                tokenLength += 1
            }
        }
        guard tokenLength > 0 else { throw CourierError.invalidSubject(subject, "it ends with an empty token") }
    }

    /// Whether ``validate(_:)`` would accept `subject`, without building an error.
    public static func isValid(_ subject: String) -> Bool {
        let count = subject.utf8.count
        guard count > 0, count <= maximumLength else { return false }
        var tokenLength = 0
        for byte in subject.utf8 {
            switch byte {
            case UInt8(ascii: "."):
                if tokenLength == 0 { return false }
                tokenLength = 0
            case UInt8(ascii: "*"), UInt8(ascii: ">"), 0...0x20, 0x7F:
                return false
            default:
                tokenLength += 1
            }
        }
        return tokenLength > 0
    }

    /// Checks one token (a category, for example): non-empty, no `.`, no whitespace, no wildcard.
    ///
    /// - Parameters:
    ///   - token: the token to check.
    ///   - role: what the token is, for the error message (`"category"`, `"topic"`, …).
    public static func validateToken(_ token: String, role: String) throws {
        do {
            try validate(token)
        } catch let error as CourierError {
            throw CourierError(
                .invalidSubject, "invalid \(role) '\(CourierError.abbreviated(token))': \(error.message)", input: token)
        }
        if token.utf8.contains(UInt8(ascii: ".")) {
            throw CourierError(
                .invalidSubject, "invalid \(role) '\(CourierError.abbreviated(token))': it must be a single token",
                input: token)
        }
    }

    /// `<prefix>.<category>.<topic>`, validated. The topic may itself hold several dotted tokens.
    public static func build(prefix: String = defaultPrefix, category: String, topic: String) throws -> String {
        try validate(prefix)
        try validateToken(category, role: "category")
        do {
            try validate(topic)
        } catch let error as CourierError {
            throw CourierError(
                .invalidSubject, "invalid topic '\(CourierError.abbreviated(topic))': \(error.message)", input: topic)
        }
        return "\(prefix).\(category).\(topic)"
    }

    /// The filter for every subject of a category: `<prefix>.<category>.>`.
    public static func categoryFilter(prefix: String = defaultPrefix, category: String) -> String {
        "\(prefix).\(category).>"
    }

    /// The category token of `subject` (the token right after `prefix`), if the subject is under it.
    public static func category(of subject: String, prefix: String = defaultPrefix) -> String? {
        guard subject.hasPrefix(prefix + ".") else { return nil }
        let rest = subject.dropFirst(prefix.count + 1)
        let token = rest.prefix { $0 != "." }
        return token.isEmpty ? nil : String(token)
    }
}
