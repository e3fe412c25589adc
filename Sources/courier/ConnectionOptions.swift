#if NATS
import ArgumentParser
import Courier
import Foundation

/// How a command reaches NATS JetStream: every command that connects takes these.
struct ConnectionOptions: ParsableArguments {
    @Option(
        name: .long,
        help:
            "NATS server URL, or several separated by commas for a cluster (default: $NATS_URL, else nats://127.0.0.1:4222)."
    )
    var server: String?

    @Option(name: .long, help: "JetStream stream name.")
    var stream: String = "EVENTS"

    @Option(name: .long, help: "Subject prefix the stream captures.")
    var prefix: String = "events"

    @Option(
        name: .long,
        help: """
            What connecting may do to the stream: create (create it when missing, never change an \
            existing one), update (also bring an existing stream's limits and replicas up to these \
            options) or bind (use an existing stream only).
            """)
    var provisioning: String = "create"

    @Flag(name: .long, help: "With --provisioning update: also lower the replicas of an existing stream.")
    var allowFewerReplicas = false

    @Option(name: .long, help: "Replicas of a stream Courier creates (3 on a 3-node cluster).")
    var replicas: Int = 1

    @Option(name: .long, help: "Storage of a stream Courier creates: file or memory.")
    var storage: String = "file"

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

    func validate() throws {
        _ = try streamProvisioning()
        guard ["file", "memory"].contains(storage) else {
            throw ValidationError("--storage must be file or memory, got '\(storage)'")
        }
        guard (1...5).contains(replicas) else { throw ValidationError("--replicas must be 1…5, got \(replicas)") }
        if allowFewerReplicas && provisioning != "update" {
            throw ValidationError("--allow-fewer-replicas needs --provisioning update")
        }
    }

    private func streamProvisioning() throws -> JetStreamProvider.StreamProvisioning {
        switch provisioning {
        case "create": .createIfMissing
        case "update": allowFewerReplicas ? .updateLimitsAllowingFewerReplicas : .updateLimits
        case "bind": .requireExisting
        default: throw ValidationError("--provisioning must be create, update or bind, got '\(provisioning)'")
        }
    }

    /// The server URLs of --server (or $NATS_URL), split at commas.
    var servers: [String] {
        resolvedServer.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    func configuration() -> JetStreamProvider.Configuration {
        var configuration = JetStreamProvider.Configuration(servers: servers)
        configuration.stream = stream
        configuration.subjectPrefix = prefix
        configuration.connectionName = "courier-cli"
        configuration.provisioning = (try? streamProvisioning()) ?? .createIfMissing
        configuration.replicas = replicas
        configuration.storage = storage == "memory" ? .memory : .file
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
