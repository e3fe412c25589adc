#if NATS
import ArgumentParser
import Courier
import Foundation

/// How a command reaches NATS JetStream.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: "NATS server URL (default: $NATS_URL, else nats://127.0.0.1:4222).")
    var server: String?

    @Option(name: .long, help: "JetStream stream name.")
    var stream: String = "EVENTS"

    @Option(name: .long, help: "Subject prefix the stream captures.")
    var prefix: String = "events"

    @Option(name: .long, help: "Authentication token.")
    var token: String?

    @Option(name: .long, help: "User name (with --password).")
    var user: String?

    @Option(name: .long, help: "Password (with --user).")
    var password: String?

    @Option(name: .long, help: "NATS credentials (.creds) file.")
    var creds: String?

    @Option(name: .long, help: "PEM file of CAs to trust for TLS.")
    var tlsCA: String?

    @Option(name: .long, help: "PEM client certificate for mutual TLS.")
    var tlsCert: String?

    @Option(name: .long, help: "PEM client key for mutual TLS.")
    var tlsKey: String?

    /// The server URL: --server, else $NATS_URL, else the local default.
    var resolvedServer: String {
        server ?? ProcessInfo.processInfo.environment["NATS_URL"] ?? "nats://127.0.0.1:4222"
    }

    func configuration() -> JetStreamProvider.Configuration {
        var configuration = JetStreamProvider.Configuration(
            servers: resolvedServer.split(separator: ",").map { String($0) }
        )
        configuration.stream = stream
        configuration.subjectPrefix = prefix
        configuration.connectionName = "courier-cli"
        if let token {
            configuration.authentication = .token(token)
        } else if let user {
            configuration.authentication = .userPassword(user: user, password: password ?? "")
        } else if let creds {
            configuration.authentication = .credentialsFile(creds)
        }
        if tlsCA != nil || tlsCert != nil || tlsKey != nil {
            configuration.tls = JetStreamProvider.TLS(caFile: tlsCA, certificateFile: tlsCert, keyFile: tlsKey)
        }
        return configuration
    }

    func connect() async throws -> JetStreamProvider {
        try await JetStreamProvider.connect(configuration())
    }
}

#endif
