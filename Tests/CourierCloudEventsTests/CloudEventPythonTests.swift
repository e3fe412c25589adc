#if CloudEvents
import CourierCloudEvents
import CourierCore
import CourierTesting
import Foundation
import Testing

/// Interoperability with the Python `cloudevents` SDK (PyPI), run as part of the suite.
@Suite("CloudEvents interoperability with the Python cloudevents SDK")
struct CloudEventPythonTests {
    static let imports = """
        import sys, json, warnings
        warnings.simplefilter("ignore")
        try:
            from cloudevents.v1.http import CloudEvent, from_json, from_http, to_binary, to_structured
            from cloudevents.v1.conversion import to_json
        except ImportError:
            from cloudevents.http import CloudEvent, from_json, from_http
            from cloudevents.conversion import to_json, to_binary, to_structured
        """

    static func python(_ script: String, input: String) async throws -> String {
        try await runChildProcess("/usr/bin/env", ["python3", "-c", imports + "\n" + script], input: input)
    }

    static let courierEvent = CloudEvent(
        id: "courier-1", source: "https://courier.example/orders", type: "com.example.order.created",
        datacontenttype: "application/json", subject: "order-1001",
        time: try! CloudEventTime(rfc3339: "2024-05-01T12:00:00.250Z"),
        data: .json(["order": "o-1001", "total": 42.5, "lines": [1, 2]]),
        extensions: ["tenant": .string("acme"), "priority": .integer(5), "urgent": .boolean(true)])

    @Test("Python parses Courier's JSON format")
    func pythonReadsStructured() async throws {
        let json = String(decoding: try CloudEventJSON.encode(Self.courierEvent), as: UTF8.self)
        let output = try await Self.python(
            """
            event = from_json(sys.stdin.buffer.read())
            attrs = event.get_attributes()
            print(json.dumps({"id": attrs["id"], "type": attrs["type"], "source": attrs["source"], "subject": attrs["subject"],
                              "tenant": attrs["tenant"], "priority": attrs["priority"], "urgent": attrs["urgent"], "data": event.data}))
            """,
            input: json
        )
        let parsed = try JSONValue(parsing: output)
        #expect(parsed["id"] == "courier-1")
        #expect(parsed["type"] == "com.example.order.created")
        #expect(parsed["subject"] == "order-1001")
        #expect(parsed["tenant"] == "acme")
        #expect(parsed["priority"] == 5)
        #expect(parsed["urgent"] == true)
        #expect(parsed["data"] == ["order": "o-1001", "total": 42.5, "lines": [1, 2]])
    }

    @Test("Python parses Courier's binary-mode headers and body")
    func pythonReadsBinary() async throws {
        let message = try NATSBinding.encode(Self.courierEvent, mode: .binary)
        let headers = JSONValue.object(
            Dictionary(message.headers.map { ($0.0, JSONValue.string($0.1)) }, uniquingKeysWith: { $1 }))
        let input = JSONValue.object([
            "headers": headers, "body": .string(String(decoding: message.payload, as: UTF8.self)),
        ])
        let output = try await Self.python(
            """
            doc = json.load(sys.stdin)
            event = from_http(doc["headers"], doc["body"].encode())
            print(json.dumps({"id": event["id"], "subject": event["subject"], "tenant": event["tenant"], "data": event.data}))
            """,
            input: input.description
        )
        let parsed = try JSONValue(parsing: output)
        #expect(parsed["id"] == "courier-1")
        #expect(parsed["tenant"] == "acme")
        #expect(parsed["data"]?["total"] == 42.5)
    }

    @Test("Courier parses events produced by Python, structured and binary")
    func courierReadsPython() async throws {
        let output = try await Self.python(
            """
            event = CloudEvent({"type": "com.example.py", "source": "/python", "id": "py-7", "subject": "from python",
                                "exttext": "naïve", "time": "2024-05-01T12:00:00+02:00"}, {"answer": 42})
            structured = to_json(event).decode()
            headers, body = to_binary(event)
            print(json.dumps({"structured": structured, "headers": dict(headers), "body": body.decode()}))
            """,
            input: ""
        )
        let document = try JSONValue(parsing: output)
        let structured = try CloudEventJSON.decode(Array(try #require(document["structured"]?.stringValue).utf8))
        #expect(structured.id == "py-7")
        #expect(structured.data == .json(["answer": 42]))
        #expect(structured.extensions["exttext"] == .string("naïve"))
        #expect(structured.time == (try CloudEventTime(rfc3339: "2024-05-01T10:00:00Z")))
        var headers: [String: String] = [:]
        for (key, value) in try #require(document["headers"]?.objectValue) {
            headers[key.lowercased()] = value.stringValue
        }
        let binary = try NATSBinding.decode(
            headers: headers, payload: Array(try #require(document["body"]?.stringValue).utf8))
        #expect(binary.id == "py-7")
        #expect(binary.subject == "from python")
        #expect(binary.data == .json(["answer": 42]))
        #expect(binary.extensions["exttext"]?.canonicalString == "naïve")
    }
}
#endif
