import Courier

// CloudEvents v1.0 in and out: a CloudEvent arriving as JSON (say, from a Knative source) is
// validated and imported as a Courier event; Courier events leave as CloudEvents in the JSON
// format or in the NATS protocol binding (structured or binary mode). With `--server`, the
// bridge also publishes a binary-mode CloudEvent to JetStream and reads it back.

let provider = try await ProviderSelection.provider(connectionName: "example-cloudevents-bridge")
let bus = EventBus(pipeline: provider)

// In: JSON from elsewhere → validated CloudEvent → Event → published.
let incoming = Array(
    #"""
    {"specversion":"1.0","id":"ce-42","source":"https://shop.example/checkout","type":"com.example.order.paid",
     "subject":"order-42","time":"2026-11-22T10:00:00Z","datacontenttype":"application/json",
     "data":{"orderID":"ord-42","amountCents":4999},
     "traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    """#.utf8)
let cloudEvent = try CloudEventJSON.decode(incoming)
var imported = try Event(cloudEvent: cloudEvent, prefix: provider.subjectPrefix)
imported.subject = try provider.buildSubject(category: "orders", topic: "paid")
imported.category = "orders"
let ack = try await bus.pipeline.publish(imported)
print(
    "imported \(cloudEvent.id) (\(cloudEvent.type)) as \(imported.subject) at sequence \(ack.sequence); traceparent kept: \(imported.metadata["traceparent"] != nil)"
)

// Bad input is refused with a typed error naming it.
do {
    _ = try CloudEventJSON.decode(Array(#"{"specversion":"0.3","id":"x","source":"s","type":"t"}"#.utf8))
} catch let error as CourierError {
    print("refused: \(error.code) — \(error.message)")
}

// Out: Event → CloudEvent → JSON format and NATS binding.
let outgoing = CloudEvent(event: imported)
print("JSON format: \(String(decoding: try CloudEventJSON.encode(outgoing), as: UTF8.self))")
let binary = try NATSBinding.encode(outgoing, mode: .binary)
print("binary mode headers: \(binary.headers.map { "\($0.0)=\($0.1)" }.sorted().joined(separator: " "))")
// Receivers see header names lowercased (NATS header names match case-insensitively).
let received = Dictionary(binary.headers.map { ($0.0.lowercased(), $0.1) }, uniquingKeysWith: { $1 })
let roundTripped = try NATSBinding.decode(headers: received, payload: binary.payload)
// Binary mode carries attributes as header strings, so typed extension values come back as
// their canonical strings (CloudEvents spec, type system); data and context attributes are kept.
let kept =
    roundTripped.id == outgoing.id && roundTripped.type == outgoing.type && roundTripped.data == outgoing.data
    && roundTripped.extensions.mapValues(\.canonicalString) == outgoing.extensions.mapValues(\.canonicalString)
print("binary round trip keeps every attribute and the data: \(kept)")

if let jetstream = provider as? JetStreamProvider {
    let subscription = try await jetstream.subscribeCloudEvents(
        consumer: nil, filter: "\(jetstream.subjectPrefix).cloudevents.>")
    // The imported event was stored with its id as dedupe id; the bridged copy needs its own.
    let bridged = PublishOptions(messageID: "bridge-\(outgoing.id)-\(UInt32.random(in: 0...UInt32.max))")
    try await jetstream.publish(
        outgoing, mode: .binary, subject: "\(jetstream.subjectPrefix).cloudevents.orders", options: bridged)
    if let received = try await subscription.next(timeout: .seconds(5)) {
        print(
            "read back from JetStream: \(received.cloudEvent.id), data kept: \(received.cloudEvent.data == outgoing.data)"
        )
        try await received.ack()
    } else {
        print("nothing read back from JetStream within 5 s")
    }
    await subscription.close()
}
await provider.shutdown()
