#if Routing && NATS
import CourierCore
import CourierJetStream
import CourierRouting
import CourierTesting
import Foundation
import Logging
import Synchronization
import Testing

/// A `courier route` child process; killed when dropped.
final class RouteProcess: @unchecked Sendable {
    let process = Process()
    let output: String

    init(config: String, server: String, stream: String, directory: String, tag: String) throws {
        output = "\(directory)/route-\(tag).log"
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        process.executableURL = URL(fileURLWithPath: try courierExecutable())
        process.arguments = [
            "route", "--config", config, "--server", server, "--stream", stream, "--log-level", "info",
        ]
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    var log: String { (try? String(contentsOfFile: output, encoding: .utf8)) ?? "" }

    func kill9() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    func terminate(within timeout: Duration) async -> Int32? {
        guard process.isRunning else { return process.terminationStatus }
        kill(process.processIdentifier, SIGTERM)
        guard await eventually(within: timeout, { !self.process.isRunning }) else {
            kill9()
            return nil
        }
        return process.terminationStatus
    }

    deinit { kill9() }
}

@Suite("Durable routing against a real nats-server")
struct DurableJetStreamRoutingTests {
    static func configuration(_ url: String, stream: String) -> JetStreamProvider.Configuration {
        var configuration = JetStreamProvider.Configuration(url: url)
        configuration.stream = stream
        configuration.connectTimeout = .seconds(2)
        configuration.requestTimeout = .seconds(5)
        return configuration
    }

    /// The original ids of the events republished on `events.audit.>`.
    static func audited(_ provider: JetStreamProvider) async throws -> [String] {
        try await provider.history(filter: "events.audit.>", limit: 100_000).compactMap {
            $0.metadata["courier_original_id"]
        }
    }

    @Test("courier route killed with SIGKILL mid-stream and restarted: every event reaches its sinks, none lost")
    func cliBrokerSurvivesKill() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let config = "\(server.workDirectory)/route.json"
        try Data(
            """
            {
              "broker": { "name": "kill-router", "filter": "events.orders.>", "ackWaitMilliseconds": 2000 },
              "delivery": { "retries": 2, "backoff": { "kind": "linear", "baseMilliseconds": 10 } },
              "triggers": [
                { "name": "audit", "filter": { "subjectPattern": "events.orders.>" },
                  "sink": { "type": "topic", "subject": "events.audit.orders" } },
                { "name": "paid-log", "filter": { "expressions": [ { "exact": { "type": "order.paid" } } ] },
                  "sink": { "type": "log", "level": "notice" } }
              ]
            }
            """.utf8
        ).write(to: URL(fileURLWithPath: config))

        let provider = try await JetStreamProvider.connect(Self.configuration(server.url, stream: "ROUTE"))
        let total = 600
        let published = Atomic<Int>(0)
        var first: RouteProcess? = try RouteProcess(
            config: config, server: server.url, stream: "ROUTE", directory: server.workDirectory, tag: "1")
        let publisher = Task {
            var ids: [String] = []
            for i in 0..<total {
                let event = Event(
                    subject: "events.orders.\(i % 2 == 0 ? "paid" : "created")",
                    category: "orders",
                    eventType: i % 2 == 0 ? "order.paid" : "order.created",
                    payload: ["i": .int(Int64(i))],
                    source: "shop"
                )
                _ = try await provider.publish(event)
                ids.append(event.id)
                published.add(1, ordering: .relaxed)
                if i % 50 == 49 { try await Task.sleep(for: .milliseconds(20)) }  // a steady stream, not one burst
            }
            return ids
        }

        // Kill the broker once it has routed part of the stream, while events keep coming.
        #expect(await eventually(within: .seconds(60)) { ((try? await Self.audited(provider).count) ?? 0) >= 100 })
        first?.kill9()
        let atKill = try await Self.audited(provider).count
        #expect(atKill < total, "the broker was killed mid-stream")
        first = nil

        let second = try RouteProcess(
            config: config, server: server.url, stream: "ROUTE", directory: server.workDirectory, tag: "2")
        let ids = try await publisher.value
        #expect(await eventually(within: .seconds(90)) { ((try? await Self.audited(provider).count) ?? 0) >= total })
        let audited = try await Self.audited(provider)
        #expect(Set(audited) == Set(ids), "every published event reached the topic sink")
        #expect(audited.count == total, "the topic sink's idempotent ids stored each republished event once")

        let status = await second.terminate(within: .seconds(20))
        #expect(status == 0, "SIGTERM shuts the broker down gracefully")
        #expect(second.log.contains("broker stopped"))
        #expect(second.log.contains("routed event"), "the log sink logged paid orders")
        #expect(try await provider.history(filter: "events.dlq.>", limit: 10).isEmpty)
        Logger(label: "test").notice("route kill test: \(atKill) of \(total) audited at the kill")
        await provider.shutdown()
    }

    @Test("Two brokers with one name share the durable consumer: each event routed once, by one of them")
    func brokersShareWork() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let publisher = try await JetStreamProvider.connect(Self.configuration(server.url, stream: "SHARED"))
        let providers = [
            try await JetStreamProvider.connect(Self.configuration(server.url, stream: "SHARED")),
            try await JetStreamProvider.connect(Self.configuration(server.url, stream: "SHARED")),
        ]
        let sinks = [CollectorSink("a"), CollectorSink("b")]
        var runs: [Task<Void, any Error>] = []
        for (provider, sink) in zip(providers, sinks) {
            let broker = Broker(
                configuration: .init(
                    name: "shared-router",
                    logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
                )
            )
            try broker.addTrigger(Trigger(name: "collect", sink: sink))
            runs.append(Task { try await broker.run(Broker.Source(provider: provider)) })
        }
        // Publish until both brokers have taken some (a broker binds a moment after it starts),
        // at least 400 events and at most 4000.
        var ids: [String] = []
        while ids.count < 4000, ids.count < 400 || sinks.contains(where: { $0.events.isEmpty }) {
            let event = Event(subject: "events.jobs.run", category: "jobs", payload: ["i": .int(Int64(ids.count))])
            _ = try await publisher.publish(event)
            ids.append(event.id)
        }
        #expect(await eventually(within: .seconds(30)) { sinks.map { $0.events.count }.reduce(0, +) >= ids.count })
        let routed = sinks.flatMap { $0.events.map(\.id) }
        #expect(Set(routed) == Set(ids))
        #expect(routed.count == ids.count, "no event was routed twice")
        #expect(sinks.allSatisfy { !$0.events.isEmpty }, "both brokers took a share: \(sinks.map { $0.events.count })")
        for run in runs { run.cancel() }
        for run in runs { _ = try? await run.value }
        for provider in providers { await provider.shutdown() }
        await publisher.shutdown()
    }

    @Test("the durable broker's consumer has a finite MaxDeliver on the server by default")
    func brokerIsBounded() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let provider = try await JetStreamProvider.connect(Self.configuration(server.url, stream: "BROKERBOUND"))
        let broker = Broker(configuration: .init(name: "bounded", deadLetters: provider.deadLetters))
        let run = Task { try await broker.run(Broker.Source(provider: provider)) }
        #expect(
            await eventually(within: .seconds(10)) {
                (try? await server.consumerConfig(stream: "BROKERBOUND", consumer: "bounded")) != nil
            })
        let maxDeliver = try await server.consumerConfig(stream: "BROKERBOUND", consumer: "bounded")?["max_deliver"]
        #expect(
            maxDeliver?.intValue == Int64(Broker.Source.defaultOptions.deliveryLimit),
            "server-side MaxDeliver is \(maxDeliver.map { "\($0)" } ?? "-")")
        run.cancel()
        _ = try? await run.value
        await provider.shutdown()
    }
}
#endif
