/// A strict RFC 8259 JSON reader over a contiguous byte buffer.
///
/// Used two ways: ``parseDocument(_:)`` builds a ``JSONValue``, and the member-by-member API
/// (``readObject(_:)``, ``readString()``, ``readValue()``) lets envelope decoders pull fields
/// without building an intermediate dictionary. Nesting is limited to ``maximumDepth`` so hostile
/// input cannot exhaust the stack, strings must be valid UTF-8, and numbers out of `Double` range are
/// rejected rather than turned into infinity.
package struct JSONReader {
    /// The deepest nesting of arrays and objects accepted.
    package static let maximumDepth = 256

    private let bytes: UnsafeBufferPointer<UInt8>
    private var index: Int
    private var depth = 0

    package init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
        self.index = 0
    }

    /// Parses a complete document into a ``JSONValue``.
    package static func parseDocument(_ input: some Collection<UInt8>) throws -> JSONValue {
        try withContiguous(input) { buffer in
            var reader = JSONReader(buffer)
            let value = try reader.readValue()
            try reader.expectEnd()
            return value
        }
    }

    /// Runs `body` over the bytes of `input` as one contiguous buffer.
    package static func withContiguous<R>(
        _ input: some Collection<UInt8>,
        _ body: (UnsafeBufferPointer<UInt8>) throws -> R
    ) throws -> R {
        if let result = try input.withContiguousStorageIfAvailable(body) { return result }
        return try Array(input).withUnsafeBufferPointer(body)
    }

    // MARK: Errors

    package func error(_ reason: @autoclosure () -> String) -> CourierError {
        let reason = reason()
        var excerpt = ""
        if !bytes.isEmpty {
            let from = max(0, min(index, bytes.count) - 16)
            let to = min(bytes.count, from + 40)
            excerpt = String(decoding: UnsafeBufferPointer(rebasing: bytes[from..<to]), as: UTF8.self)
        }
        return CourierError(
            .invalidJSON,
            "malformed JSON at byte \(index): \(reason)" + (excerpt.isEmpty ? "" : " (near '\(excerpt)')"),
            input: excerpt
        )
    }

    // MARK: Structure

    package mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x0A, 0x0D, 0x09: index += 1
            default: return
            }
        }
    }

    /// Fails unless only whitespace remains.
    package mutating func expectEnd() throws {
        skipWhitespace()
        if index != bytes.count { throw error("unexpected trailing data") }
    }

    private mutating func peek() throws -> UInt8 {
        skipWhitespace()
        guard index < bytes.count else { throw error("unexpected end of input") }
        return bytes[index]
    }

    private mutating func expect(_ byte: UInt8, _ what: @autoclosure () -> String) throws {
        guard try peek() == byte else { throw error("expected \(what())") }
        index += 1
    }

    /// Consumes `literal` when the input goes on with exactly its bytes, skipping no whitespace;
    /// returns whether it did. For readers of a fixed layout: one comparison instead of a key
    /// scan and lookup.
    @inline(__always)
    package mutating func consume(_ literal: StaticString) -> Bool {
        let length = literal.utf8CodeUnitCount
        guard index + length <= bytes.count else { return false }
        let matches = literal.withUTF8Buffer { expected in
            for i in 0..<length where bytes[index + i] != expected[i] { return false }
            return true
        }
        if matches { index += length }
        return matches
    }

    /// Whether the next value is `null`; consumes it when it is.
    package mutating func consumeNull() throws -> Bool {
        guard try peek() == UInt8(ascii: "n") else { return false }
        try readLiteral("null")
        return true
    }

    /// Reads an object, calling `member` with each key; `member` must consume the value.
    package mutating func readObject(_ member: (inout JSONReader, String) throws -> Void) throws {
        try readObjectWithRawKeys { reader, key in try member(&reader, String(decoding: key, as: UTF8.self)) }
    }

    /// Reads an object as ``readObject(_:)`` does, but hands `member` each key as its UTF-8
    /// bytes instead of a new string (a key with escapes or non-ASCII bytes is decoded and
    /// validated first).
    package mutating func readObjectWithRawKeys(
        _ member: (inout JSONReader, UnsafeBufferPointer<UInt8>) throws -> Void
    ) throws {
        try expect(UInt8(ascii: "{"), "'{'")
        depth += 1
        defer { depth -= 1 }
        guard depth <= Self.maximumDepth else { throw error("nesting deeper than \(Self.maximumDepth)") }
        if try peek() == UInt8(ascii: "}") {
            index += 1
            return
        }
        func value(after key: UnsafeBufferPointer<UInt8>) throws {
            try expect(UInt8(ascii: ":"), "':' after key '\(String(decoding: key, as: UTF8.self))'")
            try member(&self, key)
        }
        while true {
            guard try peek() == UInt8(ascii: "\"") else { throw error("expected a string key") }
            // Fast path: a plain ASCII key is handed over in place.
            let start = index + 1
            var end = start
            while end < bytes.count, bytes[end] != UInt8(ascii: "\""), bytes[end] != UInt8(ascii: "\\"),
                bytes[end] >= 0x20, bytes[end] < 0x80
            {
                end += 1
            }
            if end < bytes.count, bytes[end] == UInt8(ascii: "\"") {
                index = end + 1
                try value(after: UnsafeBufferPointer(rebasing: bytes[start..<end]))
            } else {
                try Array(try readString().utf8).withUnsafeBufferPointer { try value(after: $0) }
            }
            switch try peek() {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"):
                index += 1
                return
            default: throw error("expected ',' or '}' in object")
            }
        }
    }

    /// Reads an array, calling `element` for each element; `element` must consume the value.
    package mutating func readArray(_ element: (inout JSONReader) throws -> Void) throws {
        try expect(UInt8(ascii: "["), "'['")
        depth += 1
        defer { depth -= 1 }
        guard depth <= Self.maximumDepth else { throw error("nesting deeper than \(Self.maximumDepth)") }
        if try peek() == UInt8(ascii: "]") {
            index += 1
            return
        }
        while true {
            try element(&self)
            switch try peek() {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "]"):
                index += 1
                return
            default: throw error("expected ',' or ']' in array")
            }
        }
    }

    // MARK: Values

    /// Reads any value.
    package mutating func readValue() throws -> JSONValue {
        switch try peek() {
        case UInt8(ascii: "{"):
            var object: [String: JSONValue] = [:]
            try readObject { reader, key in object[key] = try reader.readValue() }
            return .object(object)
        case UInt8(ascii: "["):
            var array: [JSONValue] = []
            try readArray { reader in array.append(try reader.readValue()) }
            return .array(array)
        case UInt8(ascii: "\""):
            return .string(try readString())
        case UInt8(ascii: "t"):
            try readLiteral("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try readLiteral("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try readLiteral("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return try readNumber()
        default:
            throw error("unexpected character")
        }
    }

    /// Skips any value without building it, accepting exactly what ``readValue()`` accepts.
    package mutating func skipValue() throws {
        switch try peek() {
        case UInt8(ascii: "{"): try readObject { reader, _ in try reader.skipValue() }
        case UInt8(ascii: "["): try readArray { reader in try reader.skipValue() }
        case UInt8(ascii: "\""): _ = try skipString()
        default: _ = try readValue()
        }
    }

    private mutating func readLiteral(_ literal: StaticString) throws {
        guard !consume(literal) else { return }
        let complete = index + literal.utf8CodeUnitCount <= bytes.count
        throw error(complete ? "invalid literal" : "unexpected end of input")
    }

    /// Reads a string value. When `hint` has exactly the string's bytes (and the string has no
    /// escapes), `hint` itself is returned instead of a new copy.
    package mutating func readString(reusing hint: String? = nil) throws -> String {
        guard try peek() == UInt8(ascii: "\"") else { throw error("expected a string") }
        index += 1
        let start = index
        // Fast path: no escapes. ASCII needs no UTF-8 validation.
        var highBits: UInt8 = 0
        let plain = JSONScan.plainWords(bytes, from: index)
        index = plain.end
        if plain.nonASCII { highBits = 0x80 }
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let slice = UnsafeBufferPointer(rebasing: bytes[start..<index])
                index += 1
                if let hint, Self.equals(hint, slice) { return hint }
                if highBits < 0x80 { return String(decoding: slice, as: UTF8.self) }
                guard let string = String(validating: slice, as: UTF8.self) else {
                    index = start
                    throw error("string is not valid UTF-8")
                }
                return string
            }
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { throw error("unescaped control character in string") }
            highBits |= byte
            index += 1
        }
        var scratch = Array(UnsafeBufferPointer(rebasing: bytes[start..<index]))
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                guard let string = String(validating: scratch, as: UTF8.self) else {
                    throw error("string is not valid UTF-8")
                }
                return string
            case UInt8(ascii: "\\"):
                guard index < bytes.count else { throw error("unterminated escape") }
                let escape = bytes[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scratch.append(escape)
                case UInt8(ascii: "b"): scratch.append(0x08)
                case UInt8(ascii: "f"): scratch.append(0x0C)
                case UInt8(ascii: "n"): scratch.append(0x0A)
                case UInt8(ascii: "r"): scratch.append(0x0D)
                case UInt8(ascii: "t"): scratch.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try readHex4()
                    if (0xD800...0xDBFF).contains(scalar) {
                        guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"),
                            bytes[index + 1] == UInt8(ascii: "u")
                        else { throw error("unpaired high surrogate") }
                        index += 2
                        let low = try readHex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw error("invalid low surrogate") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        throw error("unpaired low surrogate")
                    }
                    guard let unicode = Unicode.Scalar(scalar) else { throw error("invalid unicode escape") }
                    scratch.append(contentsOf: String(Character(unicode)).utf8)
                default:
                    throw error("invalid escape '\\\(Character(Unicode.Scalar(escape)))'")
                }
            default:
                if byte < 0x20 { throw error("unescaped control character in string") }
                scratch.append(byte)
            }
        }
        throw error("unterminated string")
    }

    /// Skips a string value without building it, accepting exactly what ``readString()``
    /// accepts, and returns how many bytes it spans between its quotes (0 only for `""`).
    package mutating func skipString() throws -> Int {
        guard try peek() == UInt8(ascii: "\"") else { throw error("expected a string") }
        index += 1
        let start = index
        // A run of raw bytes between escapes is valid UTF-8 on its own exactly when the decoded
        // string is: an escape yields whole characters, never a continuation byte.
        var run = index
        var highBits: UInt8 = 0
        func checkRun(_ end: Int) throws {
            guard highBits >= 0x80 else { return }
            guard Self.isValidUTF8(UnsafeBufferPointer(rebasing: bytes[run..<end])) else {
                index = start
                throw error("string is not valid UTF-8")
            }
            highBits = 0
        }
        let plain = JSONScan.plainWords(bytes, from: index)
        index = plain.end
        if plain.nonASCII { highBits = 0x80 }
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                try checkRun(index)
                index += 1
                return index - 1 - start
            case UInt8(ascii: "\\"):
                try checkRun(index)
                index += 1
                guard index < bytes.count else { throw error("unterminated escape") }
                let escape = bytes[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                    UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    break
                case UInt8(ascii: "u"):
                    let scalar = try readHex4()
                    if (0xD800...0xDBFF).contains(scalar) {
                        guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"),
                            bytes[index + 1] == UInt8(ascii: "u")
                        else { throw error("unpaired high surrogate") }
                        index += 2
                        let low = try readHex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw error("invalid low surrogate") }
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        throw error("unpaired low surrogate")
                    }
                default:
                    throw error("invalid escape '\\\(Character(Unicode.Scalar(escape)))'")
                }
                run = index
            default:
                if byte < 0x20 { throw error("unescaped control character in string") }
                highBits |= byte
                index += 1
            }
        }
        throw error("unterminated string")
    }

    private static func equals(_ string: String, _ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var string = string
        return string.withUTF8 { utf8 in
            guard utf8.count == bytes.count else { return false }
            for i in 0..<bytes.count where utf8[i] != bytes[i] { return false }
            return true
        }
    }

    /// Whether `bytes` is well-formed UTF-8 (no overlong forms, surrogates or scalars past
    /// U+10FFFF), as `String(validating:as:)` requires.
    static func isValidUTF8(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var i = 0
        while i < bytes.count {
            let lead = bytes[i]
            if lead < 0x80 {
                i += 1
                continue
            }
            let length: Int
            var low: UInt8 = 0x80
            var high: UInt8 = 0xBF
            switch lead {
            case 0xC2...0xDF: length = 2
            case 0xE0:
                length = 3
                low = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: length = 3
            case 0xED:
                length = 3
                high = 0x9F
            case 0xF0:
                length = 4
                low = 0x90
            case 0xF1...0xF3: length = 4
            case 0xF4:
                length = 4
                high = 0x8F
            default: return false
            }
            guard i + length <= bytes.count else { return false }
            guard bytes[i + 1] >= low, bytes[i + 1] <= high else { return false }
            for k in 2..<length where bytes[i + k] & 0xC0 != 0x80 { return false }
            i += length
        }
        return true
    }

    private mutating func readHex4() throws -> UInt32 {
        guard index + 4 <= bytes.count else { throw error("truncated unicode escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - 0x30)
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - 0x61 + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - 0x41 + 10)
            default: throw error("invalid hex digit in unicode escape")
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }

    /// Reads a number, an integer when it has no fraction or exponent and fits in 64 bits.
    package mutating func readNumber() throws -> JSONValue {
        skipWhitespace()
        let start = index
        var negative = false
        if index < bytes.count, bytes[index] == UInt8(ascii: "-") {
            negative = true
            index += 1
        }
        guard index < bytes.count, isDigit(bytes[index]) else { throw error("expected a digit") }
        var integral: UInt64 = 0
        var overflow = false
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
            if index < bytes.count, isDigit(bytes[index]) { throw error("leading zero in number") }
        } else {
            while index < bytes.count, isDigit(bytes[index]) {
                let (times10, o1) = integral.multipliedReportingOverflow(by: 10)
                let (sum, o2) = times10.addingReportingOverflow(UInt64(bytes[index] - 0x30))
                overflow = overflow || o1 || o2
                integral = sum
                index += 1
            }
        }
        var isInteger = true
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            isInteger = false
            index += 1
            guard index < bytes.count, isDigit(bytes[index]) else { throw error("expected a digit after '.'") }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            isInteger = false
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                index += 1
            }
            guard index < bytes.count, isDigit(bytes[index]) else { throw error("expected a digit in exponent") }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if isInteger, !overflow {
            if negative, integral <= UInt64(Int64.max) + 1 {
                return .int(integral == UInt64(Int64.max) + 1 ? Int64.min : -Int64(integral))
            }
            if !negative, integral <= UInt64(Int64.max) { return .int(Int64(integral)) }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard let double = Double(text), double.isFinite else {
            index = start
            throw error("number \(text) is out of range")
        }
        return .double(double)
    }

    @inline(__always)
    private func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }
}

extension UnsafeBufferPointer<UInt8> {
    /// Whether these bytes are exactly `name`'s UTF-8: a member-name test cheap enough to run
    /// for every member of every document.
    @inlinable
    package func equals(_ name: StaticString) -> Bool {
        guard name.utf8CodeUnitCount == count else { return false }
        return name.withUTF8Buffer { expected in
            for i in 0..<count where expected[i] != self[i] { return false }
            return true
        }
    }
}
