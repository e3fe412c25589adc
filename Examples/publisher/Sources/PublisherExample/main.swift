import Courier

// `OrderCreated` is generated at build time from OrderCreated.eventschema.json by the
// EventSchemaPlugin: a struct whose required fields are non-optional, with its event type,
// version, subject and schema. Registering the schema makes the pipeline validate every publish.
let provider = try await ProviderSelection.provider(connectionName: "example-publisher")
let registry = MemorySchemaRegistry()
try GeneratedEventSchemas.register(in: registry)  // generated too: every schema of this target
let bus = EventBus(pipeline: provider.validating(registry))
print("publishing on \(provider.name)")

for index in 1...5 {
    let order = OrderCreated(
        amountCents: 1999 * index, currency: "EUR", orderID: "ord-\(index)", couponCode: index == 2 ? "WELCOME" : nil)
    let event = try await bus.publish(
        order, summary: "order \(order.orderID) for \(order.amountCents) cents", source: "example-publisher")
    print("published \(event.id) on \(event.subject) (\(OrderCreated.eventType) v\(OrderCreated.version))")
}

// The registry refuses an untyped event that breaks the schema: a typed error names the field.
do {
    let broken = Event(
        subject: "events.orders.created", category: "orders", eventType: "order.created", payload: ["orderID": 42],
        source: "example")
    try await bus.pipeline.publish(broken)
} catch let error as CourierError {
    print("schema refused: \(error.code) — \(error.message)")
}

// Retrying a publish with the same message id never stores the event twice.
let retried = Event(
    subject: "events.orders.paid", category: "orders", eventType: "order.paid", payload: ["orderID": "ord-1"],
    source: "example-publisher")
let first = try await bus.pipeline.publish(retried, options: PublishOptions(messageID: "pay-ord-1"))
let again = try await bus.pipeline.publish(retried, options: PublishOptions(messageID: "pay-ord-1"))
print("payment stored at sequence \(first.sequence); the retry was a duplicate: \(again.duplicate)")

// Invalid input is a typed error naming it.
do {
    try await bus.publish(category: "orders", topic: "bad topic", summary: "", source: "example", payload: .null)
} catch let error as CourierError {
    print("rejected as expected: \(error.code) — \(error.message)")
}

let counts = try await bus.counts()
print(
    "stored per category: \(counts.categories.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", "))"
)
await provider.shutdown()
