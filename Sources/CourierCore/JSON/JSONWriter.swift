/// Writes compact JSON into a byte buffer.
///
/// Strings escape only what RFC 8259 requires (`"`, `\` and control characters), object keys are
/// written in UTF-8 byte order, and doubles use the shortest text that reads back to the same value
/// with serde_json's exponent style (`1e-7`, `1e16`), so Courier and a3s-event write the same bytes.
/// Non-finite doubles, which JSON cannot represent, are written as `null`.
package enum JSONWriter {
    /// Appends the encoding of `value`.
    package static func write(_ value: JSONValue, into out: inout [UInt8]) {
        switch value {
        case .null: out.append(contentsOf: nullBytes)
        case .bool(let b): b ? out.append(contentsOf: trueBytes) : out.append(contentsOf: falseBytes)
        case .int(let i): writeInt(i, into: &out)
        case .double(let d): writeDouble(d, into: &out)
        case .string(let s): writeString(s, into: &out)
        case .array(let a):
            out.append(UInt8(ascii: "["))
            var first = true
            for element in a {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                write(element, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            out.append(UInt8(ascii: "{"))
            if o.count < 2 {  // nothing to sort, so no sorted copy
                for (key, member) in o { writeMember(key, member, into: &out) }
            } else {
                var first = true
                for (key, member) in sortedMembers(o) {
                    if !first { out.append(UInt8(ascii: ",")) }
                    first = false
                    writeMember(key, member, into: &out)
                }
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static func writeMember(_ key: String, _ value: JSONValue, into out: inout [UInt8]) {
        writeString(key, into: &out)
        out.append(UInt8(ascii: ":"))
        write(value, into: &out)
    }

    /// Appends `text` as it is: a fixed piece of JSON such as `,"subject":`.
    @inlinable
    package static func writeRaw(_ text: StaticString, into out: inout [UInt8]) {
        text.withUTF8Buffer { out.append(contentsOf: $0) }
    }

    /// The members of a dictionary with their keys in UTF-8 byte order (no lookup per key).
    package static func sortedMembers<V>(_ dictionary: [String: V]) -> [(key: String, value: V)] {
        if dictionary.count < 2 { return Array(dictionary) }
        return dictionary.sorted { utf8Precedes($0.key, $1.key) }
    }

    /// Whether `a` sorts before `b` by their UTF-8 bytes.
    package static func utf8Precedes(_ a: String, _ b: String) -> Bool {
        var a = a
        var b = b
        return a.withUTF8 { x in
            b.withUTF8 { y in
                for i in 0..<min(x.count, y.count) where x[i] != y[i] { return x[i] < y[i] }
                return x.count < y.count
            }
        }
    }

    /// Appends a 64-bit integer in decimal.
    package static func writeInt(_ value: Int64, into out: inout [UInt8]) {
        // Written backwards into 20 bytes on the stack (the most an Int64's magnitude needs),
        // then appended at once.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var magnitude = value.magnitude
            var start = 20
            repeat {
                start -= 1
                digits[start] = UInt8(truncatingIfNeeded: magnitude % 10) &+ 0x30
                magnitude /= 10
            } while magnitude > 0
            if value < 0 { out.append(UInt8(ascii: "-")) }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: digits[start...]))
        }
    }

    /// Appends a double as its shortest round-trip text, `null` when it is not finite.
    package static func writeDouble(_ value: Double, into out: inout [UInt8]) {
        guard value.isFinite else {
            out.append(contentsOf: nullBytes)
            return
        }
        // Swift's description is the shortest round-trip form; only the exponent style differs
        // from serde_json's ("1e-07" / "1e+16" versus "1e-7" / "1e16").
        let text = value.description.utf8
        guard let e = text.firstIndex(of: UInt8(ascii: "e")) else {
            out.append(contentsOf: text)
            return
        }
        out.append(contentsOf: text[..<e])
        out.append(UInt8(ascii: "e"))
        var rest = text[text.index(after: e)...]
        if rest.first == UInt8(ascii: "+") {
            rest = rest.dropFirst()
        } else if rest.first == UInt8(ascii: "-") {
            out.append(UInt8(ascii: "-"))
            rest = rest.dropFirst()
        }
        while rest.count > 1, rest.first == UInt8(ascii: "0") { rest = rest.dropFirst() }
        out.append(contentsOf: rest)
    }

    /// Appends a quoted, escaped string.
    package static func writeString(_ value: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // A native string's bytes are read in place; `withUTF8` would need a copy of the string
        // (it is mutating), which costs a retain and a release per string written.
        if value.utf8.withContiguousStorageIfAvailable({ writeEscaped($0, into: &out) }) == nil {
            var copy = value
            copy.withUTF8 { writeEscaped($0, into: &out) }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// Appends `bytes` (UTF-8) with what JSON strings must escape escaped, without quotes.
    private static func writeEscaped(_ bytes: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]) {
        var runStart = 0
        for i in JSONScan.plainWords(bytes, from: 0).end..<bytes.count {
            let byte = bytes[i]
            guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
            if runStart < i { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<i])) }
            runStart = i + 1
            out.append(UInt8(ascii: "\\"))
            switch byte {
            case UInt8(ascii: "\""): out.append(UInt8(ascii: "\""))
            case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
            case 0x0A: out.append(UInt8(ascii: "n"))
            case 0x0D: out.append(UInt8(ascii: "r"))
            case 0x09: out.append(UInt8(ascii: "t"))
            case 0x08: out.append(UInt8(ascii: "b"))
            case 0x0C: out.append(UInt8(ascii: "f"))
            default:
                out.append(contentsOf: [UInt8(ascii: "u"), 0x30, 0x30, hexDigit(byte >> 4), hexDigit(byte & 0xF)])
            }
        }
        if runStart < bytes.count { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart...])) }
    }

    // MARK: Sizes

    /// How many bytes ``write(_:into:)`` appends for `value`, without writing them.
    package static func size(of value: JSONValue) -> Int {
        switch value {
        case .null: 4
        case .bool(let b): b ? 4 : 5
        case .int(let i): size(ofInt: i)
        case .double(let d): size(ofDouble: d)
        case .string(let s): size(ofString: s)
        case .array(let a): 2 + max(0, a.count - 1) + a.reduce(0) { $0 + size(of: $1) }
        case .object(let o):
            2 + max(0, o.count - 1) + o.reduce(0) { $0 + size(ofString: $1.key) + 1 + size(of: $1.value) }
        }
    }

    /// How many bytes ``writeInt(_:into:)`` appends.
    package static func size(ofInt value: Int64) -> Int {
        var magnitude = value.magnitude
        var digits = 1
        while magnitude >= 10 {
            magnitude /= 10
            digits += 1
        }
        return value < 0 ? digits + 1 : digits
    }

    /// How many bytes ``writeDouble(_:into:)`` appends.
    package static func size(ofDouble value: Double) -> Int {
        guard value.isFinite else { return 4 }
        let text = value.description.utf8
        guard let e = text.firstIndex(of: UInt8(ascii: "e")) else { return text.count }
        var size = text.distance(from: text.startIndex, to: e) + 1
        var rest = text[text.index(after: e)...]
        if rest.first == UInt8(ascii: "+") {
            rest = rest.dropFirst()
        } else if rest.first == UInt8(ascii: "-") {
            size += 1
            rest = rest.dropFirst()
        }
        while rest.count > 1, rest.first == UInt8(ascii: "0") { rest = rest.dropFirst() }
        return size + rest.count
    }

    /// How many bytes ``writeString(_:into:)`` appends: the quotes, the UTF-8 bytes and the
    /// escapes.
    package static func size(ofString value: String) -> Int {
        var copy = value
        return copy.withUTF8 { bytes in
            var size = 2 + bytes.count
            for byte in bytes[JSONScan.plainWords(bytes, from: 0).end...]
            where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                switch byte {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), 0x0A, 0x0D, 0x09, 0x08, 0x0C: size += 1
                default: size += 5
                }
            }
            return size
        }
    }

    @inline(__always)
    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? 0x30 + nibble : 0x61 + nibble - 10
    }

    private static let nullBytes: [UInt8] = Array("null".utf8)
    private static let trueBytes: [UInt8] = Array("true".utf8)
    private static let falseBytes: [UInt8] = Array("false".utf8)
}
