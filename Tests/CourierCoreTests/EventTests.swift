import CourierCore
import Testing

@Suite("Event wire form")
struct EventTests {
    static let a3sDocument =
        #"{"id":"evt-6f1c2d3e-4b5a-4c6d-8e7f-901a2b3c4d5e","subject":"events.market.forex","category":"market","eventType":"","version":1,"payload":{"rate":7.35},"summary":"USD/CNY rate update","source":"reuters","timestamp":1700000000000,"metadata":{}}"#

    @Test("an a3s-event document round-trips byte for byte")
    func a3sRoundTrip() throws {
        let event = try Event(wireJSON: Array(Self.a3sDocument.utf8))
        #expect(event.id == "evt-6f1c2d3e-4b5a-4c6d-8e7f-901a2b3c4d5e")
        #expect(event.subject == "events.market.forex")
        #expect(event.category == "market")
        #expect(event.eventType == "")
        #expect(event.version == 1)
        #expect(event.payload == ["rate": 7.35])
        #expect(event.summary == "USD/CNY rate update")
        #expect(event.source == "reuters")
        #expect(event.timestamp == 1_700_000_000_000)
        #expect(event.metadata.isEmpty)
        #expect(String(decoding: event.wireJSON(), as: UTF8.self) == Self.a3sDocument)
    }

    @Test("any collection of bytes decodes, contiguous or not, to the same event")
    func collections() throws {
        let bytes = Array(Self.a3sDocument.utf8)
        let expected = try Event(wireJSON: bytes)
        #expect(try Event(wireJSON: Self.a3sDocument.utf8) == expected)
        #expect(try Event(wireJSON: bytes[...]) == expected)
        // A lazy map has no contiguous storage: its bytes are copied into an array first.
        #expect(try Event(wireJSON: bytes.lazy.map { $0 }) == expected)
        #expect(try bytes.withUnsafeBufferPointer { try Event(wireJSON: $0) } == expected)
        // The fallback path reports errors as the contiguous one does.
        let truncated = bytes.dropLast(2).lazy.map { $0 }
        let error = #expect(throws: CourierError.self) { try Event(wireJSON: truncated) }
        #expect(error?.code == .invalidJSON)
    }

    @Test("a typed document with metadata round-trips byte for byte")
    func typedRoundTrip() throws {
        let document =
            #"{"id":"evt-1","subject":"events.orders.created.eu","category":"orders","eventType":"order.created","version":2,"payload":{"amount":12.5,"items":[{"qty":2,"sku":"A"}],"note":null},"summary":"x","source":"shop","timestamp":1700000000001,"metadata":{"a":"1","traceparent":"00-abc"}}"#
        let event = try Event(wireJSON: Array(document.utf8))
        #expect(String(decoding: event.wireJSON(), as: UTF8.self) == document)
    }

    @Test("documents without eventType and version decode as untyped version 1")
    func legacyDocument() throws {
        let legacy =
            #"{"id":"evt-2","subject":"events.market.forex","category":"market","payload":{"rate":7.35},"summary":"s","source":"r","timestamp":1700000000000,"metadata":{},"extra":[1,{"x":2}]}"#
        let event = try Event(wireJSON: Array(legacy.utf8))
        #expect(event.eventType == "")
        #expect(event.version == 1)
        #expect(event.payload == ["rate": 7.35])
    }

    @Test("Codable uses the same camelCase names")
    func codable() throws {
        let event = try Event(wireJSON: Array(Self.a3sDocument.utf8))
        let value = try JSONValue(encoding: event)
        #expect(value["eventType"] == "")
        #expect(value["timestamp"] == 1_700_000_000_000)
        #expect(try value.decode(Event.self) == event)
    }

    @Test(
        "malformed envelopes name the member",
        arguments: [
            (#"{"subject":"events.a.b","category":"a","timestamp":1}"#, "id"),
            (#"{"id":"e","category":"a","timestamp":1}"#, "subject"),
            (#"{"id":"e","subject":"events.a.b","category":"a"}"#, "timestamp"),
            (#"{"id":"e","subject":"events.a.b","category":"a","timestamp":"now"}"#, "timestamp"),
            (#"{"id":7,"subject":"events.a.b","category":"a","timestamp":1}"#, "id"),
            (#"{"id":"e","subject":"events.a.b","category":"a","timestamp":1,"version":1.5}"#, "version"),
            (#"{"id":"e","subject":"events.a.b","category":"a","timestamp":1,"metadata":{"k":1}}"#, "metadata"),
        ]
    )
    func malformed(_ document: String, _ member: String) {
        let error = #expect(throws: CourierError.self) { try Event(wireJSON: Array(document.utf8)) }
        #expect(error?.code == .invalidJSON)
        #expect(error?.input == member)
    }

    @Test(
        "Courier's own layout, read by fixed member names, decodes as the general reader decodes any layout",
        arguments: [
            // Courier's layout: the fast path.
            #"{"id":"e\u00e9","subject":"events.a.b","category":"a","eventType":"t","version":3,"payload":{"k":["\n",1.5,null]},"summary":"s\"q","source":"src","timestamp":-5,"metadata":{"m":"1","n":"\u263a"}}"#,
            // The same members in another order, with whitespace, or one more member: the general scan.
            #"{"subject":"events.a.b","id":"e\u00e9","category":"a","eventType":"t","version":3,"payload":{"k":["\n",1.5,null]},"summary":"s\"q","source":"src","timestamp":-5,"metadata":{"n":"\u263a","m":"1"}}"#,
            #"{ "id" : "e\u00e9", "subject":"events.a.b","category":"a","eventType":"t","version":3,"payload":{"k":["\n",1.5,null]},"summary":"s\"q","source":"src","timestamp":-5,"metadata":{"m":"1","n":"\u263a"} }"#,
            #"{"id":"e\u00e9","subject":"events.a.b","category":"a","eventType":"t","version":3,"payload":{"k":["\n",1.5,null]},"summary":"s\"q","source":"src","timestamp":-5,"metadata":{"m":"1","n":"\u263a"},"x":0}"#,
        ]
    )
    func layouts(_ document: String) throws {
        let expected = Event(
            id: "eé", subject: "events.a.b", category: "a", eventType: "t", version: 3,
            payload: ["k": ["\n", 1.5, nil]], summary: "s\"q", source: "src", timestamp: -5,
            metadata: ["m": "1", "n": "☺"])
        #expect(try Event(wireJSON: Array(document.utf8)) == expected)
        // Only the first document is in Courier's layout, and only it takes the fast path.
        let fast = Array(document.utf8).withUnsafeBufferPointer { Event.canonicalWire($0) }
        #expect(fast == (document.hasPrefix(#"{"id":"#) && !document.hasSuffix(#""x":0}"#) ? expected : nil))
    }

    @Test("a document in Courier's layout that breaks a rule fails as the general reader fails")
    func canonicalLayoutErrors() throws {
        // Each starts out in Courier's own layout and goes wrong part way.
        for (document, member) in [
            (
                #"{"id":"e","subject":"events.a.b","category":"a","eventType":"","version":1.5,"payload":null,"summary":"","source":"","timestamp":1,"metadata":{}}"#,
                "version"
            ),
            (
                #"{"id":"e","subject":"events.a.b","category":"a","eventType":"","version":1,"payload":null,"summary":"","source":"","timestamp":"1","metadata":{}}"#,
                "timestamp"
            ),
            (
                #"{"id":"e","subject":"events.a.b","category":"a","eventType":"","version":1,"payload":null,"summary":"","source":"","timestamp":1,"metadata":{"k":1}}"#,
                "metadata"
            ),
        ] {
            let error = #expect(throws: CourierError.self) { try Event(wireJSON: Array(document.utf8)) }
            #expect(error?.code == .invalidJSON)
            #expect(error?.input == member)
        }
        let truncated =
            #"{"id":"e","subject":"events.a.b","category":"a","eventType":"","version":1,"payload":null,"summary":"","source":"","timestamp":1,"metadata":{}"#
        #expect(throws: CourierError.self) { try Event(wireJSON: Array(truncated.utf8)) }
        // `null` where Courier writes a value is read by the general scan, as before.
        let nulls =
            #"{"id":"e","subject":"events.a.b","category":"a","eventType":null,"version":null,"payload":null,"summary":null,"source":null,"timestamp":1,"metadata":null}"#
        #expect(
            try Event(wireJSON: Array(nulls.utf8)) == Event(id: "e", subject: "events.a.b", category: "a", timestamp: 1)
        )
    }

    @Test("not JSON at all is a typed error")
    func notJSON() {
        let error = #expect(throws: CourierError.self) { try Event(wireJSON: Array("hello".utf8)) }
        #expect(error?.code == .invalidJSON)
    }

    @Test("a forked child does not hand out the random bytes its parent still holds")
    func idsAfterFork() {
        // Each fill writes its own number into every byte, so bytes show which fill they came from.
        var fills: UInt8 = 0
        func fill(_ buffer: UnsafeMutableRawBufferPointer) {
            fills += 1
            for i in buffer.indices { buffer[i] = fills }
        }
        var parent = RandomPoolState()
        _ = parent.next128(forks: 0, fill: fill)
        // Two copies of one pool with no fork between them give the same bytes: what a fork
        // would do without the check.
        var twin = parent
        let fromParent = parent.next128(forks: 0, fill: fill)
        let fromTwin = twin.next128(forks: 0, fill: fill)
        #expect(fromParent == fromTwin)
        #expect(fills == 1)
        // fork() copies the pool into the child, whose fork count is one higher.
        var child = parent
        let parentAfterFork = parent.next128(forks: 0, fill: fill)
        let childAfterFork = child.next128(forks: 1, fill: fill)
        #expect(parentAfterFork == (0x0101_0101_0101_0101, 0x0101_0101_0101_0101))
        #expect(childAfterFork == (0x0202_0202_0202_0202, 0x0202_0202_0202_0202))
        // The child goes on from its own fill.
        let childNext = child.next128(forks: 1, fill: fill)
        #expect(childNext == (0x0202_0202_0202_0202, 0x0202_0202_0202_0202) && fills == 2)
    }

    @Test("new ids are evt- plus a version 4 UUID, and unique")
    func ids() async {
        // 1 000 ids span several refills of the random pool (256 ids each).
        let ids = (0..<1000).map { _ in Event.newID() }
        #expect(Set(ids).count == 1000)
        for id in ids {
            #expect(id.hasPrefix("evt-"))
            let uuid = Array(id.dropFirst(4))
            #expect(uuid.count == 36)
            #expect(uuid[14] == "4")
            #expect("89ab".contains(uuid[19]))
            #expect(uuid.allSatisfy { "0123456789abcdef-".contains($0) })
            #expect([8, 13, 18, 23].allSatisfy { uuid[$0] == "-" })
        }
        // Made on four threads at once, they are still all different.
        let concurrent = await withTaskGroup(of: [String].self) { group in
            for _ in 0..<4 { group.addTask { (0..<3_000).map { _ in Event.newID() } } }
            var all: [String] = []
            for await part in group { all += part }
            return all
        }
        #expect(Set(concurrent + ids).count == 13_000)
    }

    @Test("envelope validation names the problem")
    func validation() throws {
        var event = try Event(category: "orders", topic: "created")
        #expect(throws: Never.self) { try event.validate() }
        event.version = 0
        #expect(throws: CourierError.self) { try event.validate() }
        event.version = 1
        event.id = ""
        #expect(throws: CourierError.self) { try event.validate() }
        #expect(throws: CourierError.self) { try Event(category: "a b", topic: "x") }
    }
}
