import Courier
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import UnixSignals

// Courier inside a service: the provider (JetStream with `--server`), an IngestBus, a durable
// Broker and a producer run in one ServiceGroup. SIGTERM (or SIGINT) shuts them down in reverse
// order: the producer stops, the ingest bus drains every ring into the provider, the broker
// finishes the events it is routing, and the provider waits for in-flight publishes and acks.
// The final stats show that every event accepted was stored.

/// Ingests a few thousand events a second until graceful shutdown.
final class Producer: Service {
    let bus: IngestBus
    let prefix: String
    let source: String
    let produced = Atomic<Int>(0)

    init(bus: IngestBus, prefix: String, source: String) {
        self.bus = bus
        self.prefix = prefix
        self.source = source
    }

    func run() async throws {
        var index = 0
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            for _ in 0..<50 {
                let event = Event(
                    subject: "\(prefix).orders.created", category: "orders", eventType: "order.created",
                    payload: ["n": .int(Int64(index))], source: source)
                if (try? bus.ingestRaw(RawEvent(event))) != nil { produced.add(1, ordering: .relaxed) }
                index += 1
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }
}

LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = .notice
    return handler
}
let logger = Logger(label: "service-group")
let provider = try await ProviderSelection.provider(connectionName: "example-service-group")
let runID = String(UInt32.random(in: 0...UInt32.max), radix: 16)

let ingest = try IngestBus(
    configuration: .init(
        shards: 2, backpressure: .block(timeout: .seconds(5)), adapter: ProviderAdapter(provider: provider),
        logger: logger))
let routed = CollectorSink("orders")
let broker = Broker(
    configuration: .init(
        name: "service-group-\(runID)",
        deadLetters: provider.deadLetters,
        source: .init(
            provider: provider, filter: "\(provider.subjectPrefix).orders.>",
            options: SubscribeOptions(maxDeliver: 100, deliverPolicy: .new)),
        logger: logger
    )
)
try broker.addTrigger(Trigger(name: "orders", filter: TriggerFilter(eventType: "order.created"), sink: routed))
let source = "service-group-\(runID)"
let producer = Producer(bus: ingest, prefix: provider.subjectPrefix, source: source)

var services: [any Service] = []
if let jetstream = provider as? JetStreamProvider { services.append(jetstream) }
services += [broker, ingest, producer]
let group = ServiceGroup(
    configuration: .init(
        services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
)
print(
    "service group running on \(provider.name) (pid \(ProcessInfo.processInfo.processIdentifier)); send SIGTERM to stop"
)
fflush(nil)  // flush every stream: the line above is what scripts wait for
try await group.run()

let stats = ingest.stats
let produced = producer.produced.load(ordering: .relaxed)
// The group shut the JetStream provider down; count what the stream holds over a new connection.
let reader =
    await provider.health()
    ? provider : try await ProviderSelection.provider(connectionName: "example-service-group-check")
let stored = try await reader.history(filter: "\(provider.subjectPrefix).orders.created", limit: 10_000_000).filter {
    $0.source == source
}.count
await reader.shutdown()
print("produced \(produced); \(stats)")
print("stored \(stored), routed \(routed.events.count) before shutdown")
let nothingLost =
    stats.eventsIngested == UInt64(produced) && stats.eventsDispatched == stats.eventsIngested
    && stats.eventsDropped == 0 && !stats.shutdownWasLossy && stored == produced
print("nothing lost: \(nothingLost)")
if !nothingLost { exit(1) }
