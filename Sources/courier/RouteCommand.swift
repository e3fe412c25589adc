#if NATS && Routing
import ArgumentParser
import Courier
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

struct RouteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "route",
        abstract: "Run a durable broker from a routing file until SIGINT or SIGTERM.",
        discussion: """
            The file (JSON) declares the broker, the default delivery policy, where dead letters go \
            and the triggers with their filters and sinks (topic, log); see Examples/routing/route.json. \
            The broker reads its durable consumer (the broker name) and acks each event only once \
            every matching trigger delivered or dead-lettered it, so it can be stopped, killed and \
            restarted without losing events; several processes with one name share the work. \
            --server/--stream/--prefix given on the command line win over the file.
            """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var connection: ConnectionOptions

    @Option(name: .long, help: "The routing file (JSON).")
    var config: String

    @Flag(name: .long, help: "Check the file and print the triggers, without connecting.")
    var check = false

    @Option(
        name: .long,
        help: """
            Serve Prometheus metrics on http://HOST:PORT/metrics and a health check on /health \
            (503 while the NATS connection is down), e.g. 127.0.0.1:9464. Off unless given.
            """)
    var metricsListen: String?

    func run() async throws {
        global.bootstrapLogging()
        let routing = try Self.load(config)
        if check {
            for trigger in routing.triggers {
                emit(
                    "\(trigger.name): \(try JSONValue(encoding: trigger.filter)) -> \(trigger.sink.type) \(trigger.sink.subject ?? trigger.sink.level ?? "")"
                )
            }
            return
        }
        let metricsAddress = try metricsListen.map { text in
            guard let address = MetricsEndpoint.parse(text) else {
                throw CourierError(
                    .invalidConfiguration, "--metrics-listen takes IPv4-HOST:PORT, e.g. 127.0.0.1:9464", input: text)
            }
            return address
        }
        // Before any metric exists: the broker's and triggers' counters are created with it.
        let registry = metricsAddress.map { _ in MetricsEndpoint.bootstrapMetrics() }
        var options = connection
        let arguments = CommandLine.arguments
        if let server = routing.server, options.server == nil { options.server = server }
        if let stream = routing.stream, !arguments.contains("--stream") { options.stream = stream }
        if let prefix = routing.prefix, !arguments.contains("--prefix") { options.prefix = prefix }
        let logger = Logger(label: "courier.route")
        // Log sinks are the command's output: they print whatever --log-level says.
        var sinkLogger = Logger(label: "courier.route.sink")
        sinkLogger.logLevel = .trace
        let provider = try await options.connect()
        do {
            let broker = try routing.makeBroker(provider: provider, logger: logger, sinkLogger: sinkLogger)
            emit(
                "routing \(routing.triggers.count) trigger(s) as '\(routing.broker.name)' on \(options.resolvedServer)")
            var services: [any Service] = [broker]
            if let metricsAddress, let registry {
                services.append(
                    MetricsEndpoint(
                        address: metricsAddress, registry: registry,
                        isHealthy: {
                            await provider.health()
                                ? (true, "connected to NATS") : (false, "the NATS connection is down")
                        },
                        announce: { emit($0) }))
            }
            let group = ServiceGroup(
                configuration: ServiceGroupConfiguration(
                    services: services,
                    gracefulShutdownSignals: [.sigterm, .sigint],
                    logger: logger
                )
            )
            try await group.run()
        } catch {
            await provider.shutdown()
            throw error
        }
        await provider.shutdown()
        emit("broker stopped")
    }

    static func load(_ path: String) throws -> RoutingConfiguration {
        if path.hasSuffix(".yaml") || path.hasSuffix(".yml") {
            throw CourierError(
                .invalidConfiguration,
                "\(path): YAML routing files are not supported; write the same structure as JSON",
                input: path
            )
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CourierError(.notFound, "cannot read routing file \(path)", input: path)
        }
        return try RoutingConfiguration.parse(Array(data), source: path)
    }
}
#endif
