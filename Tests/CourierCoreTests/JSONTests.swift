import CourierCore
import Testing

@Suite("JSON values")
struct JSONTests {
    @Test("compact output with sorted keys and serde_json number style")
    func writing() throws {
        let value: JSONValue = ["b": 1, "a": [true, nil, 2.5], "c": ["z": "x", "y": -3]]
        #expect(value.description == #"{"a":[true,null,2.5],"b":1,"c":{"y":-3,"z":"x"}}"#)
        #expect(JSONValue.double(1e-7).description == "1e-7")
        #expect(JSONValue.double(1e16).description == "1e16")
        #expect(JSONValue.double(1.0).description == "1.0")
        #expect(JSONValue.double(7.35).description == "7.35")
        #expect(JSONValue.double(.infinity).description == "null")
        #expect(JSONValue.int(.min).description == "-9223372036854775808")
        #expect(JSONValue.string("q\"\\\n\t\u{1}é").description == #""q\"\\\n\t\u0001é""#)
    }

    @Test(
        "documents read back to the same bytes",
        arguments: [
            #"{"a":1,"b":[1.5,-2,"x"],"c":{"d":null,"e":false}}"#,
            #"[9223372036854775807,-9223372036854775808,18446744073709551616]"#,
            #""\u00e9\ud83d\ude00 ok""#,
            "0", "-0.5", "1e300", "[]", "{}",
        ]
    )
    func roundTrip(_ text: String) throws {
        let value = try JSONValue(parsing: text)
        let again = try JSONValue(parsing: value.jsonBytes())
        #expect(again == value)
    }

    @Test("strings are escaped right wherever the byte to escape sits (eight bytes are checked at a time)")
    func escapingAtEveryPosition() throws {
        /// Escapes a byte at a time, as RFC 8259 asks: the reference.
        func reference(_ text: String) -> String {
            var out = "\""
            for scalar in text.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                case "\u{08}": out += "\\b"
                case "\u{0C}": out += "\\f"
                case let c where c.value < 0x20:
                    let hex = String(c.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                default: out.unicodeScalars.append(scalar)
                }
            }
            return out + "\""
        }
        let specials: [String] = [
            "\"", "\\", "\n", "\u{01}", "\u{1F}", "\u{08}", " ", "!", "#", "[", "]", "é", "😀", "\u{7F}",
        ]
        var checked = 0
        for length in 0..<27 {
            for position in 0..<max(length, 1) {
                for special in specials {
                    var text = String(repeating: "a", count: length)
                    if length > 0 {
                        let index = text.index(text.startIndex, offsetBy: position)
                        text.replaceSubrange(index...index, with: special)
                    }
                    let written = JSONValue.string(text).description
                    #expect(written == reference(text), "length \(length), '\(special)' at \(position)")
                    #expect(JSONWriter.size(ofString: text) == written.utf8.count)
                    #expect(try JSONValue(parsing: written) == .string(text))
                    checked += 1
                }
            }
        }
        #expect(checked > 4_000)
    }

    @Test("reading refuses a raw control byte or bad UTF-8 wherever it sits (eight bytes are checked at a time)")
    func readingRefusesAtEveryPosition() throws {
        /// What reading and skipping say about the string literal `body`: its length, or nil.
        func read(_ body: [UInt8]) -> (read: String?, skipped: Int?) {
            let document = [UInt8(ascii: "\"")] + body + [UInt8(ascii: "\"")]
            let value = try? JSONValue(parsing: document)
            let skipped = document.withUnsafeBufferPointer { buffer -> Int? in
                var reader = JSONReader(buffer)
                return try? reader.skipString()
            }
            guard case .string(let text)? = value else { return (nil, skipped) }
            return (text, skipped)
        }
        for length in 1..<25 {
            for position in 0..<length {
                var body = [UInt8](repeating: UInt8(ascii: "a"), count: length)
                body[position] = 0x01
                #expect(read(body).read == nil && read(body).skipped == nil, "control byte at \(position) of \(length)")
                body[position] = 0xC3  // a lead byte with no continuation
                #expect(read(body).read == nil && read(body).skipped == nil, "bad UTF-8 at \(position) of \(length)")
                body[position] = 0xE9  // é is 0xC3 0xA9; 0xE9 alone is not UTF-8
                #expect(read(body).read == nil, "lone 0xE9 at \(position) of \(length)")
                body.replaceSubrange(position...position, with: [0xC3, 0xA9])
                let good = read(body)
                #expect(
                    good.read?.utf8.count == length + 1 && good.skipped == length + 1, "é at \(position) of \(length)")
            }
        }
    }

    @Test("escapes decode to the right scalars")
    func escapes() throws {
        #expect(try JSONValue(parsing: #""\u00e9\ud83d\ude00\/\b""#) == .string("é😀/\u{8}"))
    }

    @Test("integers stay integers and numbers compare by value")
    func numbers() throws {
        #expect(try JSONValue(parsing: "7") == .int(7))
        #expect(try JSONValue(parsing: "7.0") == .double(7))
        #expect(JSONValue.int(7) == JSONValue.double(7))
        #expect(try JSONValue(parsing: "12345678901234567890") == .double(Double("12345678901234567890")!))
    }

    @Test(
        "malformed documents fail with the byte offset",
        arguments: [
            "", "{", #"{"a"}"#, #"{"a":1,}"#, "[1 2]", "01", "1.", "-", "tru", #""\x""#, "\"\u{01}\"", "1e999",
            #""\ud800""#, "[1] x", "{'a':1}", "NaN",
        ]
    )
    func malformed(_ text: String) {
        let error = #expect(throws: CourierError.self) { try JSONValue(parsing: text) }
        #expect(error?.code == .invalidJSON)
        #expect(error?.message.contains("byte") == true)
    }

    @Test("invalid UTF-8 is rejected")
    func invalidUTF8() {
        #expect(throws: CourierError.self) { try JSONValue(parsing: [0x22, 0xFF, 0x22]) }
    }

    @Test("nesting is bounded")
    func depth() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: CourierError.self) { try JSONValue(parsing: deep) }
        let fine = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        #expect(throws: Never.self) { try JSONValue(parsing: fine) }
    }

    @Test("Encodable payloads convert both ways")
    func codable() throws {
        struct Order: Codable, Equatable { var id: String; var total: Double; var lines: [Int] }
        let order = Order(id: "o-1", total: 9.5, lines: [1, 2])
        let value = try JSONValue(encoding: order)
        #expect(value["id"] == "o-1")
        #expect(value["lines"]?[1] == 2)
        #expect(try value.decode(Order.self) == order)
        #expect(throws: CourierError.self) { try JSONValue.string("x").decode(Order.self) }
    }

    @Test("base64 and hex round trip and reject junk")
    func encodings() {
        for length in 0..<9 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
            #expect(Hex.decode(Hex.encode(bytes)) == bytes)
        }
        #expect(Base64.encode(Array("foobar".utf8)) == "Zm9vYmFy")
        #expect(Base64.encode(Array("fo".utf8)) == "Zm8=")
        #expect(Base64.decode("Zm9v!mFy") == nil)
        #expect(Base64.decode("Zm8") == nil)
        #expect(Base64.decode("Z===") == nil)
        #expect(Base64.decode("Zm=v") == nil)
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
    }
}
