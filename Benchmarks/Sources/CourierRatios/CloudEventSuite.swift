import Courier
import Foundation

/// JSON encode + decode of a typical CloudEvent with 1 KiB of data, against Foundation's
/// `JSONSerialization` round-tripping the same document (which validates nothing).
func cloudEventPairs() throws -> [Pair] {
    let event = CloudEvent(
        id: "A234-1234-1234", source: "https://example.com/orders", type: "com.example.order.created",
        datacontenttype: "application/json", subject: "order-1001",
        time: try CloudEventTime(rfc3339: "2024-05-01T12:00:00.250Z"),
        data: .json(["order": "o-1001", "notes": .string(String(repeating: "x", count: 1000))]),
        extensions: [
            "traceparent": .string("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            "tenant": .string("acme"),
        ]
    )
    let bytes = try CloudEventJSON.encode(event)
    // The event every JetStream row publishes and consumes: a 128-byte payload.
    let wire = Event(
        subject: "events.bench.market.fx", category: "market",
        payload: ["data": .string(String(repeating: "x", count: 118))]
    ).wireJSON()
    let decodes = 200_000
    let document = try JSONSerialization.jsonObject(with: Data(bytes))
    let count = 50_000
    return [
        Pair(
            name: "Event wire JSON decode, 128-byte payload (events/s)",
            baseline: "JSONSerialization.jsonObject of the same bytes",
            courier: "Event(wireJSON:) (validated)",
            target: nil,
            measureBaseline: {
                let data = Data(wire)
                return try await timed(decodes) {
                    for _ in 0..<decodes { _ = try JSONSerialization.jsonObject(with: data) }
                }
            },
            measureCourier: {
                try await timed(decodes) {
                    for _ in 0..<decodes { _ = try Event(wireJSON: wire) }
                }
            }
        ),
        Pair(
            name: "CloudEvent JSON encode + decode, 1 KiB data (events/s)",
            baseline: "JSONSerialization round trip of the same document",
            courier: "CloudEventJSON.encode + decode (validated)",
            target: nil,
            measureBaseline: {
                try await timed(count) {
                    for _ in 0..<count {
                        let data = try JSONSerialization.data(withJSONObject: document)
                        _ = try JSONSerialization.jsonObject(with: data)
                    }
                }
            },
            measureCourier: {
                try await timed(count) {
                    for _ in 0..<count { _ = try CloudEventJSON.decode(try CloudEventJSON.encode(event)) }
                }
            }
        ),
    ]
}
