#if NATS && Routing
import FlyingFox
import FlyingSocks
import Foundation
import Metrics
import Prometheus
import ServiceLifecycle

/// The opt-in HTTP endpoint of a long-running command: `GET /metrics` answers with every
/// swift-metrics metric Courier records, in the Prometheus text format; `GET /health` answers
/// 200 while `isHealthy()` holds and 503 otherwise (for `courier route`: while the NATS
/// connection is down).
///
/// FlyingFox serves it: an HTTP server on plain sockets and Swift concurrency with no
/// dependencies of its own, so the endpoint costs the tool one small package instead of SwiftNIO.
struct MetricsEndpoint: Service {
    let address: (host: String, port: UInt16)
    let registry: PrometheusCollectorRegistry
    let isHealthy: @Sendable () async -> (healthy: Bool, detail: String)
    let announce: @Sendable (String) -> Void

    /// Parses `HOST:PORT` (IPv4, e.g. `127.0.0.1:9464`; `:9464` listens on loopback).
    static func parse(_ text: String) -> (host: String, port: UInt16)? {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else {
            return nil
        }
        let host = text[..<colon].isEmpty ? "127.0.0.1" : String(text[..<colon])
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts.allSatisfy({ UInt8($0) != nil }) else { return nil }
        return (host, port)
    }

    /// Makes swift-metrics record into a fresh Prometheus registry and returns it. Call it once,
    /// before any metric is created.
    static func bootstrapMetrics() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }

    func run() async throws {
        let server = HTTPServer(address: try .inet(ip4: address.host, port: address.port), timeout: 10)
        let registry = self.registry
        let isHealthy = self.isHealthy
        await server.appendRoute("GET /metrics") { _ in
            HTTPResponse(
                statusCode: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: Data(registry.emitToBuffer()))
        }
        await server.appendRoute("GET /health") { _ in
            let (healthy, detail) = await isHealthy()
            return HTTPResponse(
                statusCode: healthy ? .ok : .serviceUnavailable, headers: [.contentType: "text/plain; charset=utf-8"],
                body: Data("\(healthy ? "ok" : "unhealthy"): \(detail)\n".utf8))
        }
        let announce = self.announce
        let listening = "http://\(address.host):\(address.port)"
        do {
            try await cancelWhenGracefulShutdown {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await server.run() }
                    try await server.waitUntilListening(timeout: 10)
                    announce("serving metrics on \(listening)/metrics and health on \(listening)/health")
                    try await group.next()
                }
            }
        } catch  where Task.isCancelled || Task.isShuttingDownGracefully {
            // Stopped with the other services.
        }
    }
}
#endif
