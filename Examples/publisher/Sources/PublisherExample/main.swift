import Courier

/// A typed payload: any `Encodable` value becomes the event's JSON payload.
struct OrderCreated: Codable, Sendable {
    var orderID: String
    var amountCents: Int
    var currency: String
}

let provider = try await ProviderSelection.provider(connectionName: "example-publisher")
let bus = EventBus(provider: provider)
print("publishing on \(provider.name)")

for index in 1...5 {
    let order = OrderCreated(orderID: "ord-\(index)", amountCents: 1999 * index, currency: "EUR")
    let event = try await bus.publish(
        category: "orders",
        topic: "created",
        eventType: "order.created",
        version: 1,
        summary: "order \(order.orderID) for \(order.amountCents) cents",
        source: "example-publisher",
        payload: order
    )
    print("published \(event.id) on \(event.subject)")
}

// Retrying a publish with the same message id never stores the event twice.
let retried = Event(subject: "events.orders.paid", category: "orders", eventType: "order.paid", payload: ["orderID": "ord-1"], source: "example-publisher")
let first = try await bus.publishEvent(retried, options: PublishOptions(messageID: "pay-ord-1"))
let again = try await bus.publishEvent(retried, options: PublishOptions(messageID: "pay-ord-1"))
print("payment stored at sequence \(first.sequence); the retry was a duplicate: \(again.duplicate)")

// Invalid input is a typed error naming it.
do {
    try await bus.publish(category: "orders", topic: "bad topic", summary: "", source: "example", payload: .null)
} catch let error as CourierError {
    print("rejected as expected: \(error.code) — \(error.message)")
}

let counts = try await bus.counts()
print("stored per category: \(counts.categories.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", "))")
await provider.shutdown()
