import Courier
import Foundation

// Broker/Trigger routing: the triggers and sinks come from the same routing file that
// `courier route --config Examples/routing/route.json` runs. This example routes inline (the
// broker reads the pipeline with an in-memory position, so events are routed as they are
// published) and adds an in-process sink of its own.

let provider = try await ProviderSelection.provider(connectionName: "example-routing")
let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()
let file = ProviderSelection.value(of: "--config") ?? here.appendingPathComponent("route.json").path
let routing = try RoutingConfiguration.parse(Array(try Data(contentsOf: URL(fileURLWithPath: file))), source: file)
let broker = try routing.makeBroker(provider: provider)

let shipped = CollectorSink("shipping")
// Orders only: the broker reads the whole stream, so it also sees the audit copies it republishes.
try broker.addTrigger(
    Trigger(
        name: "ship-paid",
        filter: TriggerFilter(eventType: "order.paid", subjectPattern: "\(provider.subjectPrefix).orders.>"),
        sink: shipped))

let bus = EventBus(pipeline: provider)
print("routing with \(broker.triggers.count) triggers from \(file)")
let running = Task { try await broker.run(.inline(provider)) }
guard await broker.waitUntilReading(timeout: .seconds(10)) else { fatalError("the broker did not start") }

for (index, type) in ["order.created", "order.paid", "order.cancelled"].enumerated() {
    try await bus.publish(
        category: "orders", topic: String(type.split(separator: ".")[1]), eventType: type, version: 1,
        summary: "\(type) #\(index)", source: "example-routing", payload: ["index": .int(Int64(index))]
    )
}

// Wait (bounded) until the broker routed the three orders, then stop it.
var audit: [Event] = []
for _ in 0..<100 {
    audit = try await provider.history(filter: "\(provider.subjectPrefix).audit.>", limit: 100)
    if shipped.events.count == 1 && audit.count >= 3 { break }
    try await Task.sleep(for: .milliseconds(50))
}
running.cancel()
_ = try? await running.value
print("audit topic holds \(audit.count) routed events")
print("shipping sink received: \(shipped.events.map(\.eventType))")
for name in broker.triggers.map(\.name) {
    if let metrics = broker.metrics(forTrigger: name) {
        print(
            "trigger \(name): matched \(metrics.matched), delivered \(metrics.delivered), dead-lettered \(metrics.deadLettered)"
        )
    }
}
await provider.shutdown()
