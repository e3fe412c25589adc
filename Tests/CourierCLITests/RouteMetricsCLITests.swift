#if NATS && Routing
import CourierCore
import CourierTesting
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `courier route --metrics-listen` (issue "Production topology", item 6).
@Suite("courier route: metrics and health endpoint")
struct RouteMetricsCLITests {
    /// A `courier` child process running in the background; killed when dropped.
    final class Background: @unchecked Sendable {
        // `@unchecked Sendable`: `process` is configured and started in `init`; afterwards only
        // its thread-safe status and PID are read, and `output` is immutable.
        let process = Process()
        let output: String

        init(_ arguments: [String], directory: String) throws {
            output = "\(directory)/courier.log"
            _ = FileManager.default.createFile(atPath: output, contents: nil)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
            process.executableURL = URL(fileURLWithPath: try courierExecutable())
            process.arguments = arguments
            process.standardOutput = handle
            process.standardError = handle
            try process.run()
        }

        var log: String { (try? String(contentsOfFile: output, encoding: .utf8)) ?? "" }

        deinit {
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
        }
    }

    /// The sum of every sample of `metric` in a Prometheus text page.
    static func total(_ metric: String, in page: String) -> Double {
        page.split(separator: "\n").reduce(0) { sum, line in
            guard line.hasPrefix(metric + "{") || line.hasPrefix(metric + " "),
                let value = line.split(separator: " ").last.flatMap({ Double($0) })
            else { return sum }
            return sum + value
        }
    }

    @Test("metrics grow as events are routed; health fails while the server is stopped and recovers")
    func metricsAndHealth() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        let config = "\(server.workDirectory)/route.json"
        try Data(
            """
            {
              "broker": { "name": "metered", "filter": "events.orders.>" },
              "triggers": [
                { "name": "audit", "filter": { "subjectPattern": "events.orders.>" },
                  "sink": { "type": "topic", "subject": "events.audit.orders" } }
              ]
            }
            """.utf8
        ).write(to: URL(fileURLWithPath: config))
        let port = try NATSServerHarness.freePort()
        let route = try Background(
            [
                "route", "--config", config, "--server", server.url, "--stream", "METERED",
                "--metrics-listen", "127.0.0.1:\(port)",
            ], directory: server.workDirectory)
        #expect(
            await eventually(within: .seconds(30)) { route.log.contains("serving metrics") },
            "the endpoint never came up: \(route.log)")
        let healthy = try await LoopbackClient.get(port: port, path: "/health")
        #expect(healthy.status == 200, "\(healthy.body)")

        func publish(_ count: Int) async throws {
            let run = try await runCourier([
                "pub", "orders", "created", "--count", "\(count)", "--server", server.url, "--stream", "METERED",
            ])
            #expect(run.status == 0, "\(run.errors)")
        }
        func delivered() async throws -> Double {
            Self.total(
                "courier_trigger_delivered_total", in: try await LoopbackClient.get(port: port, path: "/metrics").body)
        }
        try await publish(10)
        #expect(
            await eventually(within: .seconds(30)) { (try? await delivered()) ?? 0 >= 10 }, "routed counter below 10")
        let first = try await delivered()
        try await publish(15)
        #expect(
            await eventually(within: .seconds(30)) { (try? await delivered()) ?? 0 >= first + 15 },
            "routed counter did not grow by 15 from \(first)")
        let page = try await LoopbackClient.get(port: port, path: "/metrics")
        #expect(page.body.contains("# TYPE courier_trigger_delivered_total counter"), "\(page.body.prefix(400))")

        server.stop()
        var unhealthy: (status: Int, body: String)?
        #expect(
            await eventually(within: .seconds(15)) {
                unhealthy = try? await LoopbackClient.get(port: port, path: "/health")
                return unhealthy?.status == 503
            }, "health stayed \(String(describing: unhealthy)) with the server stopped")
        try await server.restart()
        #expect(
            await eventually(within: .seconds(30)) {
                (try? await LoopbackClient.get(port: port, path: "/health"))?.status == 200
            }, "health did not recover after the server came back")
        print(
            "route metrics: \(try await delivered()) routed; health while stopped: \(unhealthy.map { "\($0.status) \($0.body)" } ?? "-")"
        )
        kill(route.process.processIdentifier, SIGTERM)
        #expect(await eventually(within: .seconds(20)) { !route.process.isRunning })
        #expect(route.process.terminationStatus == 0, "\(route.log.suffix(2000))")
    }
}
#endif
