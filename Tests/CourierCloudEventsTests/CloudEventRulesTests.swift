#if CloudEvents
import CourierCloudEvents
import CourierCore
import Testing

/// Our own vectors, written from the CloudEvents 1.0 specification text.
@Suite("CloudEvents rules, JSON format and conversion")
struct CloudEventRulesTests {
    static let base = #"{"specversion":"1.0","id":"x","type":"com.example.t","source":"/s""#

    static func decode(_ extra: String) throws -> CloudEvent {
        try CloudEventJSON.decode(Array((base + extra + "}").utf8))
    }

    @Test(
        "valid documents",
        arguments: [
            "",
            #","time":"2018-04-05T17:31:00.123456789Z""#,
            #","time":"2018-04-05T17:31:00+01:00""#,
            #","time":"2018-04-05t17:31:00z""#,
            #","time":"2024-02-29T23:59:60Z""#,
            #","source":"urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66""#,
            #","source":"../relative/path?q=1#frag""#,
            #","datacontenttype":"application/vnd.api+json; charset=utf-8","data":{"a":[1,2]}"#,
            #","datacontenttype":"text/plain; charset=\"utf-8\"","data":"héllo""#,
            #","data_base64":"AAECAw==""#,
            #","dataschema":"https://example.com/schema.json""#,
            #","subject":"orders/1","datacontenttype":null,"dataschema":null,"time":null"#,
            #","ext1":true,"ext2":-2147483648,"ext3":2147483647,"ext4":"v""#,
            #","data":null"#,
        ]
    )
    func valid(_ extra: String) throws {
        let event = try Self.decode(extra)
        #expect(try CloudEventJSON.decode(try CloudEventJSON.encode(event)) == event)
    }

    @Test(
        "invalid documents name the attribute",
        arguments: [
            (#","time":"2018-04-05 17:31:00Z""#, "time"),
            (#","time":"2018-02-30T10:00:00Z""#, "time"),
            (#","time":"2018-04-05T24:00:00Z""#, "time"),
            (#","time":"2018-04-05T17:31:00.Z""#, "time"),
            (#","dataschema":"relative/path""#, "dataschema"),
            (#","datacontenttype":"text/""#, "datacontenttype"),
            (#","datacontenttype":"text plain""#, "datacontenttype"),
            (#","source":"has space""#, "source"),
            (#","ext":2147483648"#, "ext"),
            (#","ext":{"nested":1}"#, "ext"),
            (#","ext":[1]"#, "ext"),
            (#","Ext":"x""#, "Ext"),
            (#","ext_1":"x""#, "ext_1"),
            (#","ext":"bell\u0007""#, "ext"),
            (#","subject":"c1 \u0085 control""#, "subject"),
            (#","data_base64":"not base64!""#, "data_base64"),
            (#","type":"""#, "type"),
            (#","id":true"#, "id"),
        ]
    )
    func invalid(_ extra: String, _ attribute: String) {
        let error = #expect(throws: CourierError.self) { try Self.decode(extra) }
        #expect(error?.code == .invalidCloudEvent)
        #expect(error?.input == attribute, "\(error?.message ?? "")")
    }

    @Test("times compare as instants across offsets and precision")
    func timeInstants() throws {
        let utc = try CloudEventTime(rfc3339: "2018-04-05T17:31:00Z")
        #expect(utc == (try CloudEventTime(rfc3339: "2018-04-05T18:31:00+01:00")))
        #expect(utc == (try CloudEventTime(rfc3339: "2018-04-05T16:31:00.000-01:00")))
        #expect(utc != (try CloudEventTime(rfc3339: "2018-04-05T17:31:00.001Z")))
        #expect(CloudEventTime(unixMilliseconds: 1_700_000_000_123).text == "2023-11-14T22:13:20.123Z")
        #expect(CloudEventTime(unixMilliseconds: 1_700_000_000_123).unixMilliseconds == 1_700_000_000_123)
        #expect(CloudEventTime(unixMilliseconds: -1).text == "1969-12-31T23:59:59.999Z")
    }

    @Test("JSON data is written as JSON, text as a string, bytes as data_base64")
    func dataForms() throws {
        var event = CloudEvent(
            id: "1", source: "/s", type: "t", datacontenttype: "application/json", data: .json(["k": [1, 2]]))
        #expect(try CloudEventJSON.encodeValue(event)["data"] == ["k": [1, 2]])
        event.datacontenttype = "text/plain"
        event.data = .text("plain")
        #expect(try CloudEventJSON.encodeValue(event)["data"] == "plain")
        event.datacontenttype = "application/octet-stream"
        event.data = .binary([0, 1, 2, 255])
        let value = try CloudEventJSON.encodeValue(event)
        #expect(value["data_base64"] == "AAEC/w==")
        #expect(value["data"] == nil)
        #expect(try CloudEventJSON.decode(value.jsonBytes()).data == .binary([0, 1, 2, 255]))
    }

    static let samples: [Event] = [
        Event(subject: "events.orders.created", category: "orders", payload: ["total": 12.5], source: "shop"),
        Event(
            subject: "events.orders.created.eu", category: "orders", eventType: "order.created", version: 3,
            payload: ["a": [1, "b"]],
            summary: "Order créé", source: "https://shop.example/eu", timestamp: 1_700_000_000_123,
            metadata: [
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "tracestate": "congo=t61rcWkgMzE", "tenant": "acme",
            ]),
        Event(subject: "events.misc.x", category: "misc", payload: nil, source: ""),
        Event(
            subject: "events.misc.y", category: "misc", eventType: "a3s.event", payload: "text payload", summary: "",
            source: "s"),
    ]

    @Test("Event → CloudEvent → Event is lossless, also through JSON", arguments: samples)
    func conversionRoundTrip(_ event: Event) throws {
        let cloudEvent = CloudEvent(event: event)
        try cloudEvent.validate()
        #expect(try Event(cloudEvent: cloudEvent) == event)
        #expect(try Event(cloudEvent: try CloudEventJSON.decode(try CloudEventJSON.encode(cloudEvent))) == event)
        for mode in [CloudEventMode.structured, .binary] {
            let message = try NATSBinding.encode(cloudEvent, mode: mode)
            let headers = Dictionary(message.headers.map { ($0.0.lowercased(), $0.1) }, uniquingKeysWith: { $1 })
            #expect(
                try Event(cloudEvent: try NATSBinding.decode(headers: headers, payload: message.payload)) == event,
                "\(mode)")
        }
    }

    @Test("conversion maps the documented attributes and passes trace context through")
    func conversionMapping() throws {
        let cloudEvent = CloudEvent(event: Self.samples[1])
        #expect(cloudEvent.type == "order.created")
        #expect(cloudEvent.time?.text == "2023-11-14T22:13:20.123Z")
        #expect(cloudEvent.extensions["a3scategory"] == .string("orders"))
        #expect(cloudEvent.extensions["a3sversion"] == .integer(3))
        #expect(
            cloudEvent.extensions["traceparent"] == .string("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))
        #expect(cloudEvent.extensions["tracestate"] == .string("congo=t61rcWkgMzE"))
        #expect(cloudEvent.extensions["a3smetadata"] == .string(#"{"tenant":"acme"}"#))
        #expect(CloudEvent(event: Self.samples[0]).type == CloudEventConversion.untypedType)
    }

    @Test("a3s-event's nested extensions object is read as top-level extensions")
    func a3sNestedExtensions() throws {
        let document = #"""
            {"specversion":"1.0","id":"evt-1","source":"reuters","type":"a3s.event","time":"2023-11-14T22:13:20Z",
             "subject":"events.market.forex","datacontenttype":"application/json","data":{"rate":7.35},
             "extensions":{"a3scategory":"market","a3sversion":1,"a3ssummary":"USD/CNY","a3stimestamp":1700000000000}}
            """#
        let cloudEvent = try CloudEventJSON.decode(Array(document.utf8))
        let event = try Event(cloudEvent: cloudEvent)
        #expect(event.category == "market")
        #expect(event.summary == "USD/CNY")
        #expect(event.timestamp == 1_700_000_000_000)
        #expect(event.subject == "events.market.forex")
        #expect(event.eventType == "")
        #expect(event.payload == ["rate": 7.35])
    }

    @Test("binary mode percent-encodes header values and detects the mode case-insensitively")
    func binaryHeaders() throws {
        let event = CloudEvent(
            id: "id with space", source: "/s", type: "t", subject: "naïve \"quoted\" 100%", data: .json(["ok": true]),
            extensions: ["note": .string("日本語")])
        let message = try NATSBinding.encode(event, mode: .binary)
        let headers = Dictionary(message.headers, uniquingKeysWith: { $1 })
        #expect(headers["ce-id"] == "id%20with%20space")
        #expect(headers["ce-subject"] == "na%C3%AFve%20%22quoted%22%20100%25")
        #expect(headers["Content-Type"] == "application/json")
        #expect(message.payload == Array(#"{"ok":true}"#.utf8))
        let mixedCase = Dictionary(message.headers.map { ($0.0.uppercased(), $0.1) }, uniquingKeysWith: { $1 })
        let decoded = try NATSBinding.decode(headers: mixedCase, payload: message.payload)
        #expect(decoded.subject == "naïve \"quoted\" 100%")
        #expect(decoded.extensions["note"] == .string("日本語"))
        #expect(NATSBinding.mode(of: ["CONTENT-TYPE": "Application/CloudEvents+JSON"]) == .structured)
        #expect(NATSBinding.mode(of: ["content-type": "application/json"]) == .binary)
        #expect(throws: CourierError.self) { try NATSBinding.decode(headers: [:], payload: [1, 2]) }
    }
}
#endif
