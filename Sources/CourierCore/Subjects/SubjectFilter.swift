/// A NATS subject filter: literal tokens, `*` for exactly one token, `>` for one or more trailing
/// tokens (last position only).
///
/// Matching follows NATS exactly: `events.a.>` matches `events.a.b` and `events.a.b.c` but not
/// `events.a`; `events.*.x` matches `events.a.x` but not `events.a.b.x`.
///
/// ```swift
/// let filter = try SubjectFilter("events.market.>")
/// filter.matches("events.market.forex")  // true
/// ```
public struct SubjectFilter: Sendable, Hashable, CustomStringConvertible {
    /// One token of a filter.
    package enum Token: Sendable, Hashable {
        case literal([UInt8])
        case single
        case rest
    }

    /// The filter as written.
    public let pattern: String
    package let tokens: [Token]

    /// Parses and validates a filter.
    ///
    /// - Throws: ``CourierError`` (``CourierError/Code/invalidFilter``) naming the filter and the rule.
    public init(_ pattern: String) throws {
        guard !pattern.isEmpty else { throw CourierError.invalidFilter(pattern, "it is empty") }
        guard pattern.utf8.count <= Subjects.maximumLength else {
            throw CourierError.invalidFilter(pattern, "it is longer than \(Subjects.maximumLength) bytes")
        }
        var tokens: [Token] = []
        let parts = pattern.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        for (i, part) in parts.enumerated() {
            guard !part.isEmpty else { throw CourierError.invalidFilter(pattern, "token \(i + 1) is empty") }
            if part.contains(where: { $0 <= 0x20 || $0 == 0x7F }) {
                throw CourierError.invalidFilter(pattern, "token \(i + 1) has whitespace or a control character")
            }
            if part.elementsEqual("*".utf8) {
                tokens.append(.single)
            } else if part.elementsEqual(">".utf8) {
                guard i == parts.count - 1 else {
                    throw CourierError.invalidFilter(pattern, "'>' must be the last token")
                }
                tokens.append(.rest)
            } else if part.contains(UInt8(ascii: "*")) || part.contains(UInt8(ascii: ">")) {
                throw CourierError.invalidFilter(pattern, "a wildcard must be a whole token (token \(i + 1))")
            } else {
                tokens.append(.literal(Array(part)))
            }
        }
        self.pattern = pattern
        self.tokens = tokens
    }

    /// A filter matching exactly one (valid) subject.
    package init(literal subject: String) {
        self.pattern = subject
        self.tokens = subject.utf8.split(separator: UInt8(ascii: ".")).map { .literal(Array($0)) }
    }

    /// Whether the filter has no wildcard.
    public var isLiteral: Bool {
        tokens.allSatisfy { if case .literal = $0 { true } else { false } }
    }

    /// Whether `subject` matches.
    public func matches(_ subject: String) -> Bool {
        if let result = subject.utf8.withContiguousStorageIfAvailable({ matches(utf8: $0) }) { return result }
        return Array(subject.utf8).withUnsafeBufferPointer { matches(utf8: $0) }
    }

    /// Whether the subject given as UTF-8 bytes matches.
    public func matches(utf8 subject: UnsafeBufferPointer<UInt8>) -> Bool {
        var start = 0
        var tokenIndex = 0
        let count = subject.count
        while tokenIndex < tokens.count {
            if start > count { return false }  // subject exhausted
            switch tokens[tokenIndex] {
            case .rest:
                return start < count  // at least one more token
            case .single:
                guard start < count else { return false }
                var end = start
                while end < count, subject[end] != UInt8(ascii: ".") { end += 1 }
                if end == start { return false }
                start = end + 1
            case .literal(let literal):
                let end = start + literal.count
                guard end <= count else { return false }
                for i in 0..<literal.count where subject[start + i] != literal[i] { return false }
                if end < count, subject[end] != UInt8(ascii: ".") { return false }
                start = end + 1
            }
            tokenIndex += 1
        }
        return start == count + 1  // consumed the final token exactly
    }

    /// Whether some subject under `<prefix>.` could match this filter.
    public func canMatch(under prefix: String) -> Bool {
        let prefixTokens = prefix.utf8.split(separator: UInt8(ascii: "."))
        for (i, prefixToken) in prefixTokens.enumerated() {
            guard i < tokens.count else { return false }
            switch tokens[i] {
            case .rest: return true
            case .single: continue
            case .literal(let literal): if !literal.elementsEqual(prefixToken) { return false }
            }
        }
        return tokens.count > prefixTokens.count
    }

    /// Whether every subject this filter matches is also matched by `other`.
    public func isSubset(of other: SubjectFilter) -> Bool {
        for (i, token) in tokens.enumerated() {
            guard i < other.tokens.count else { return false }
            switch (other.tokens[i], token) {
            case (.rest, _): return true
            case (.single, .literal), (.single, .single): continue
            case (.literal(let a), .literal(let b)) where a == b: continue
            default: return false
            }
        }
        return tokens.count == other.tokens.count
    }

    public var description: String { pattern }
}
