/// Standard base64 (RFC 4648 §4, with padding) and hex, without Foundation.
package enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let reverse: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in alphabet.enumerated() { table[Int(c)] = UInt8(i) }
        return table
    }()

    /// Encodes `bytes`.
    package static func encode(_ bytes: some Collection<UInt8>) -> String {
        if let encoded = bytes.withContiguousStorageIfAvailable({ encode(buffer: $0) }) { return encoded }
        return Array(bytes).withUnsafeBufferPointer { encode(buffer: $0) }
    }

    private static func encode(buffer input: UnsafeBufferPointer<UInt8>) -> String {
        let outputLength = (input.count + 2) / 3 * 4
        guard outputLength > 0 else { return "" }
        return alphabet.withUnsafeBufferPointer { table in
            String(unsafeUninitializedCapacity: outputLength) { out in
                var i = 0
                var o = 0
                while i + 3 <= input.count {
                    let n = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8 | UInt32(input[i + 2])
                    out[o] = table[Int(n >> 18 & 63)]
                    out[o + 1] = table[Int(n >> 12 & 63)]
                    out[o + 2] = table[Int(n >> 6 & 63)]
                    out[o + 3] = table[Int(n & 63)]
                    i += 3
                    o += 4
                }
                let rest = input.count - i
                if rest > 0 {
                    let n = UInt32(input[i]) << 16 | (rest == 2 ? UInt32(input[i + 1]) << 8 : 0)
                    out[o] = table[Int(n >> 18 & 63)]
                    out[o + 1] = table[Int(n >> 12 & 63)]
                    out[o + 2] = rest == 2 ? table[Int(n >> 6 & 63)] : UInt8(ascii: "=")
                    out[o + 3] = UInt8(ascii: "=")
                    o += 4
                }
                return o
            }
        }
    }

    /// Decodes standard padded base64; `nil` when `text` is not exactly that.
    package static func decode(_ text: String) -> [UInt8]? {
        var text = text
        return text.withUTF8 { decode(buffer: $0) }
    }

    private static func decode(buffer input: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        guard input.count % 4 == 0 else { return nil }
        guard !input.isEmpty else { return [] }
        var padding = 0
        if input[input.count - 1] == UInt8(ascii: "=") { padding += 1 }
        if input[input.count - 2] == UInt8(ascii: "=") { padding += 1 }
        let outputLength = input.count / 4 * 3 - padding
        var valid = true
        let output = reverse.withUnsafeBufferPointer { table in
            [UInt8](unsafeUninitializedCapacity: outputLength) { out, count in
                var o = 0
                var i = 0
                while i < input.count {
                    let last = i + 4 == input.count
                    let a = table[Int(input[i])]
                    let b = table[Int(input[i + 1])]
                    var c = table[Int(input[i + 2])]
                    var d = table[Int(input[i + 3])]
                    if last {
                        // Padding only in the final group's last two positions, and "x=y=" is not valid.
                        if padding == 2 {
                            guard input[i + 2] == UInt8(ascii: "="), input[i + 3] == UInt8(ascii: "=") else {
                                valid = false; break
                            }
                            c = 0
                            d = 0
                        } else if padding == 1 {
                            d = 0
                        }
                    }
                    guard a | b | c | d != 0xFF, a < 64, b < 64, c < 64, d < 64 else {
                        valid = false
                        break
                    }
                    let n = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6 | UInt32(d)
                    out[o] = UInt8(n >> 16 & 0xFF)
                    if o + 1 < outputLength { out[o + 1] = UInt8(n >> 8 & 0xFF) }
                    if o + 2 < outputLength { out[o + 2] = UInt8(n & 0xFF) }
                    o += 3
                    i += 4
                }
                count = valid ? outputLength : 0
            }
        }
        return valid ? output : nil
    }
}

/// Lowercase hex encoding.
package enum Hex {
    /// Encodes `bytes` as lowercase hex.
    package static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `value` as 16 lowercase hex digits.
    package static func encode64(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// Decodes hex (either case); `nil` when `text` is not an even number of hex digits.
    package static func decode(_ text: String) -> [UInt8]? {
        let input = Array(text.utf8)
        guard input.count % 2 == 0 else { return nil }
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: c - 0x30
            case 0x61...0x66: c - 0x61 + 10
            case 0x41...0x46: c - 0x41 + 10
            default: nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(input.count / 2)
        var i = 0
        while i < input.count {
            guard let hi = value(input[i]), let lo = value(input[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}
