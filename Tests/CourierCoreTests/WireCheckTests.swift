import Testing

@testable import CourierCore

/// `Event.checkWire` lets the memory provider keep ingested events in their wire form and decode
/// them on delivery. That is only sound if it accepts exactly the documents that decode into a
/// valid event: anything it passes and decoding refuses would be an accepted event lost later.
@Suite("Checking the wire form without decoding")
struct WireCheckTests {
    static let documents: [String] = [
        #"{"id":"evt-1","subject":"events.market.forex","category":"market","eventType":"","version":1,"payload":{"rate":7.35,"list":[1,-2.5e3,true,false,null,"x\n\u00e9"]},"summary":"s","source":"reuters","timestamp":1700000000000,"metadata":{"a":"1","b":"\ud83d\ude00"}}"#,
        #"{"id":"é-ü","subject":"events.orders.created","category":"orders","timestamp":-1,"version":null,"metadata":null,"eventType":null,"summary":null,"source":null,"extra":{"deep":[[{}]]}}"#,
        #"{"id":"x","subject":"events.a.b","category":"a","timestamp":0,"payload":"caf\u00e9 ☕ 𝄞","version":3}"#,
        #" { "timestamp" : 5 , "category" : "c" , "subject" : "events.c.d" , "id" : "\"q\"" } "#,
    ]

    /// Whether `bytes` decode into an event that validates, and its subject.
    static func decodes(_ bytes: [UInt8]) -> String? {
        guard let event = try? Event(wireJSON: bytes), (try? event.validate()) != nil else { return nil }
        return event.subject
    }

    @Test("valid documents pass and give the subject decoding gives")
    func validDocuments() throws {
        for document in Self.documents {
            let bytes = Array(document.utf8)
            let subject = try Event.checkWire(bytes)
            #expect(subject == Self.decodes(bytes), "\(document)")
        }
    }

    @Test("the subject hint is reused only when it is the subject")
    func subjectHint() throws {
        let bytes = Array(Self.documents[0].utf8)
        #expect(try Event.checkWire(bytes, subjectHint: "events.market.forex") == "events.market.forex")
        #expect(try Event.checkWire(bytes, subjectHint: "events.market.other") == "events.market.forex")
    }

    @Test("envelope rules: empty id, bad subject, version 0, missing members")
    func envelopeRules() {
        let bad = [
            #"{"id":"","subject":"events.a.b","category":"a","timestamp":1}"#,
            #"{"id":"x","subject":"events..b","category":"a","timestamp":1}"#,
            #"{"id":"x","subject":"events.a.b","category":"a","timestamp":1,"version":0}"#,
            #"{"id":"x","subject":"events.a.b","timestamp":1}"#,
            #"{"id":"x","subject":"events.a.b","category":"a"}"#,
            #"{"id":"x","subject":"events.a.b","category":"a","timestamp":1.5}"#,
            #"{"id":"x","subject":"events.a.b","category":"a","timestamp":1,"metadata":{"k":1}}"#,
            #"{"id":"x","subject":"events.a.b","category":"a","timestamp":1} x"#,
        ]
        for document in bad {
            let bytes = Array(document.utf8)
            #expect(Self.decodes(bytes) == nil, "\(document)")
            #expect(throws: CourierError.self, "\(document)") { try Event.checkWire(bytes) }
        }
    }

    @Test("invalid UTF-8 is refused the way String(validating:) refuses it")
    func utf8() {
        let sequences: [[UInt8]] = [
            [0xC3, 0xA9], [0xC0, 0x80], [0xC1, 0xBF], [0xE0, 0x80, 0x80], [0xE0, 0xA0, 0x80], [0xED, 0xA0, 0x80],
            [0xED, 0x9F, 0xBF], [0xEF, 0xBF, 0xBF], [0xF0, 0x80, 0x80, 0x80], [0xF0, 0x90, 0x80, 0x80],
            [0xF4, 0x8F, 0xBF, 0xBF], [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xFF], [0x80],
            [0xC3], [0xE2, 0x82], [0xC3, 0x41], [0x41, 0xC3, 0x5C, 0x6E, 0xA9],
        ]
        for sequence in sequences {
            let valid = String(validating: sequence.filter { $0 != 0x5C && $0 != 0x6E }, as: UTF8.self) != nil
            for member in ["id", "summary"] {
                var bytes = Array(#"{"subject":"events.a.b","category":"a","timestamp":1,"\#(member)":""#.utf8)
                bytes += sequence
                bytes += Array(#""\#(member == "id" ? "" : #","id":"x""#)}"#.utf8)
                let decoded = Self.decodes(bytes) != nil
                let checked = (try? Event.checkWire(bytes)) != nil
                #expect(decoded == checked, "\(sequence) in \(member)")
                if !sequence.contains(0x5C) { #expect(checked == valid, "\(sequence) in \(member)") }
            }
        }
    }

    @Test("mutated documents: the check accepts exactly what decodes")
    func mutations() {
        var random = FixedRandom(seed: 0x9E37_79B9_7F4A_7C15)
        func next(_ bound: Int) -> Int { random.next(bound) }
        let alphabet =
            Array(#"{}[]":,\u0123456789abcdefnrtlse.-+ "#.utf8) + [0x00, 0x1F, 0x7F, 0xC3, 0xA9, 0xED, 0xF0, 0x80]
        var accepted = 0
        var refused = 0
        for round in 0..<6_000 {
            var bytes = Array(Self.documents[round % Self.documents.count].utf8)
            for _ in 0...next(3) {
                let position = next(bytes.count)
                switch next(3) {
                case 0: bytes[position] = alphabet[next(alphabet.count)]
                case 1: bytes.remove(at: position)
                default: bytes.insert(alphabet[next(alphabet.count)], at: position)
                }
            }
            let decoded = Self.decodes(bytes)
            let checked = try? Event.checkWire(bytes)
            #expect(decoded == checked, "\(String(decoding: bytes, as: UTF8.self))")
            if checked == nil { refused += 1 } else { accepted += 1 }
        }
        // Both sides were exercised.
        #expect(accepted > 300)
        #expect(refused > 300)
    }

    @Test("wireSize is the byte count of wireJSON, counted without writing it")
    func wireSize() {
        var random = FixedRandom(seed: 42)
        func next(_ bound: Int) -> Int { random.next(bound) }
        let strings = ["", "a", "é☕𝄞", "q\"b\\c/", "\n\r\t\u{08}\u{0C}\u{01}\u{1F}", String(repeating: "x", count: 40)]
        let doubles: [Double] = [
            0, -0.0, 1.0842, -2.5e-7, 1e16, 1.5e300, .leastNonzeroMagnitude, .nan, .infinity, 123_456.789,
        ]
        func value(_ depth: Int) -> JSONValue {
            switch next(depth > 2 ? 5 : 7) {
            case 0: return .null
            case 1: return .bool(next(2) == 0)
            case 2: return .int([0, -1, 9, 10, -10, Int64.max, Int64.min][next(7)])
            case 3: return .double(doubles[next(doubles.count)])
            case 4: return .string(strings[next(strings.count)])
            case 5: return .array((0..<next(4)).map { _ in value(depth + 1) })
            default:
                var object: [String: JSONValue] = [:]
                for _ in 0..<next(4) { object[strings[next(strings.count)]] = value(depth + 1) }
                return .object(object)
            }
        }
        for _ in 0..<2_000 {
            var metadata: [String: String] = [:]
            for _ in 0..<next(3) { metadata[strings[next(strings.count)]] = strings[next(strings.count)] }
            let event = Event(
                id: strings[next(strings.count)], subject: "events.a.b", category: strings[next(strings.count)],
                eventType: strings[next(strings.count)], version: [1, 12, -3][next(3)], payload: value(0),
                summary: strings[next(strings.count)], source: strings[next(strings.count)],
                timestamp: [0, 1_700_000_000_000, -5][next(3)], metadata: metadata)
            #expect(event.wireSize == event.wireJSON().count, "\(event)")
        }
    }
}

/// A fixed pseudo-random sequence (a 64-bit LCG), so a failing generated case reproduces.
struct FixedRandom {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    /// The next number in `0..<bound`.
    mutating func next(_ bound: Int) -> Int {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Int((state >> 33) % UInt64(bound))
    }
}
