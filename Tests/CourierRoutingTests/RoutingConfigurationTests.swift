#if Routing
import CourierCore
import CourierRouting
import Foundation
import Testing

@Suite("Routing files")
struct RoutingConfigurationTests {
    static func parse(_ text: String) throws -> RoutingConfiguration {
        try RoutingConfiguration.parse(Array(text.utf8), source: "route.json")
    }

    @Test("The example file parses and builds a durable broker with its triggers")
    func exampleFile() async throws {
        let path = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Examples/routing/route.json").path
        let data = try #require(FileManager.default.contents(atPath: path))
        let routing = try RoutingConfiguration.parse(Array(data), source: path)
        #expect(routing.triggers.map(\.name) == ["audit-orders", "log-paid"])
        #expect(routing.delivery.retries == 3)
        #expect(routing.triggers[1].delivery?.retries == 1)
        let broker = try routing.makeBroker(provider: MemoryProvider())
        #expect(broker.configuration.name == "orders-router")
        #expect(broker.configuration.source?.filter == "events.>")
        #expect(broker.triggers.map(\.name) == ["audit-orders", "log-paid"])
        let paid = Event(subject: "events.orders.paid", category: "orders", eventType: "order.paid", payload: nil)
        #expect(broker.matchingTriggers(for: paid) == ["audit-orders", "log-paid"])
        let created = Event(subject: "events.orders.created", category: "orders", payload: nil, summary: "created")
        #expect(broker.matchingTriggers(for: created) == ["audit-orders"])
    }

    @Test("Defaults: provider dead letters, 30 s attempt timeout; null means unbounded")
    func defaults() throws {
        let routing = try Self.parse(#"{"triggers":[{"name":"t","sink":{"type":"log"}}]}"#)
        #expect(routing.deadLetter.type == "provider")
        #expect(routing.delivery.attemptTimeout == .seconds(30))
        #expect(routing.broker.name == "courier-broker")
        let unbounded = try Self.parse(
            #"{"delivery":{"attemptTimeoutMilliseconds":null},"triggers":[{"name":"t","sink":{"type":"log"}}]}"#)
        #expect(unbounded.delivery.attemptTimeout == nil)
    }

    @Test(
        "Bad files are rejected with the file and the offending field named",
        arguments: [
            (#"{"triggers":[{"name":"t","sink":{"type":"log"}}],"trigers":[]}"#, "trigers"),
            (#"{"triggers":[{"name":"t","filter":{"eventtype":"x"},"sink":{"type":"log"}}]}"#, "eventtype"),
            (#"{"triggers":[{"name":"t","sink":{"type":"webhook"}}]}"#, "webhook"),
            (#"{"triggers":[{"name":"t","sink":{"type":"topic"}}]}"#, "subject"),
            (#"{"triggers":[{"name":"t","sink":{"type":"topic","subject":"events.a.>"}}]}"#, "events.a.>"),
            (#"{"triggers":[{"name":"t","sink":{"type":"log"}},{"name":"t","sink":{"type":"log"}}]}"#, "used twice"),
            (#"{"triggers":[]}"#, "at least one trigger"),
            (
                #"{"triggers":[{"name":"t","filter":{"subjectPattern":"events.>.x"},"sink":{"type":"log"}}]}"#,
                "subjectPattern"
            ),
            (#"{"triggers":[{"name":"t","sink":{"type":"log"},"delivery":{"retries":-1}}]}"#, "retries"),
            (
                #"{"delivery":{"backoff":{"kind":"fibonacci"}},"triggers":[{"name":"t","sink":{"type":"log"}}]}"#,
                "fibonacci"
            ),
            (#"{"broker":{"concurrency":0},"triggers":[{"name":"t","sink":{"type":"log"}}]}"#, "concurrency"),
            (#"{"triggers":[{"name":"t","sink":{"type":"log","level":"loud"}}]}"#, "loud"),
            (#"{"triggers":[{"sink":{"type":"log"}}]}"#, "name"),
            (#"{"triggers":"#, "route.json"),
        ])
    func badFiles(text: String, mentions: String) throws {
        let error = try #require(throws: CourierError.self) {
            let routing = try Self.parse(text)
            _ = try routing.makeBroker(provider: MemoryProvider())
        }
        #expect(error.message.contains("route.json"), "\(error)")
        #expect(error.message.contains(mentions), "\(error)")
    }
}
#endif
