import CourierCore

#if NATS
import CourierJetStream
#endif

/// Picks a provider from a program's command line: NATS JetStream when `--server URL` is given
/// (stream `--stream NAME`, default `EVENTS`), otherwise an embedded `MemoryProvider`. The
/// examples use it so that each runs on the embedded provider by default and against a real
/// nats-server with `--server`.
public enum ProviderSelection {
    /// The value following `flag` in `arguments`, if any.
    public static func value(of flag: String, in arguments: [String] = CommandLine.arguments) -> String? {
        guard let index = arguments.firstIndex(of: flag), arguments.index(after: index) < arguments.endIndex else {
            return nil
        }
        return arguments[arguments.index(after: index)]
    }

    /// Connects the provider the arguments ask for.
    ///
    /// - Throws: `CourierError` naming the URL when `--server` is given and no server answers,
    ///   or `invalidConfiguration` when `--server` is given to a build without
    ///   the `NATS` trait.
    public static func provider(
        arguments: [String] = CommandLine.arguments,
        connectionName: String = "courier-example",
        memory: MemoryProvider.Configuration = MemoryProvider.Configuration()
    ) async throws -> any EventProvider {
        guard let server = value(of: "--server", in: arguments) else { return MemoryProvider(configuration: memory) }
        #if NATS
        var configuration = JetStreamProvider.Configuration(url: server)
        configuration.stream = value(of: "--stream", in: arguments) ?? configuration.stream
        configuration.connectionName = connectionName
        return try await JetStreamProvider.connect(configuration)
        #else
        throw CourierError(.invalidConfiguration, "--server \(server) needs the NATS trait", input: "--server")
        #endif
    }
}
