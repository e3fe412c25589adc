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
