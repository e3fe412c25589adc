#if NATS
public import CourierCore
public import Logging

extension JetStreamProvider {
    /// Where and how to connect, and the stream to use.
    public struct Configuration: Sendable {
        /// Server URLs; several for a cluster (`nats://host:4222`, `tls://host:4222`).
        public var servers: [String]
        /// The client connection name shown by the server.
        public var connectionName: String = "courier"
        /// The stream name.
        public var stream: String = "EVENTS"
        /// The subject prefix; the stream captures `<prefix>.>`.
        public var subjectPrefix: String = Subjects.defaultPrefix
        /// File or memory storage.
        public var storage: Storage = .file
        /// Stream replicas (1 on a single server).
        public var replicas: Int = 1
        /// The most events kept; `nil` is unlimited.
        public var maxEvents: Int64? = nil
        /// The most bytes kept; `nil` is unlimited.
        public var maxBytes: Int64? = nil
        /// How long events are kept; `nil` is forever.
        public var maxAge: Duration? = nil
        /// How long the server remembers message ids for dedupe.
        public var duplicateWindow: Duration = .seconds(120)
        /// How long one connection attempt may take.
        public var connectTimeout: Duration = .seconds(5)
        /// How long to wait for a JetStream API reply or a publish acknowledgement.
        public var requestTimeout: Duration = .seconds(5)
        /// Reconnection behaviour.
        public var reconnect: Reconnect = Reconnect()
        /// Credentials.
        public var authentication: Authentication = .none
        /// TLS settings; `nil` uses TLS only when a URL says `tls://`.
        public var tls: TLS? = nil
        /// The most asynchronous publishes in flight at once.
        public var publishWindow: Int = 4096
        /// Threads that synchronous publishes block on while awaiting their acknowledgement:
        /// how many ``JetStreamProvider/publish(_:options:)`` calls can wait at once.
        public var publishThreads: Int = 4
        /// Where exhausted or undecodable deliveries go unless a subscription names its own;
        /// `nil` publishes them to `<prefix>.dlq.<original subject>` in the stream.
        public var deadLetterHandler: (any DlqHandler)? = nil
        /// How long graceful shutdown (``JetStreamProvider/run()`` as a `Service`) waits for
        /// in-flight publishes and acknowledgements.
        public var shutdownDrainTimeout: Duration = .seconds(10)
        /// The logger for connection events and diagnostics.
        public var logger: Logger = Logger(label: "courier.jetstream")

        /// A configuration for `servers` with every other setting at its default.
        public init(servers: [String] = ["nats://127.0.0.1:4222"]) {
            self.servers = servers
        }

        /// A configuration for one server URL.
        public init(url: String) {
            self.init(servers: [url])
        }

        /// Checks the values, naming the first invalid one.
        public func validate() throws {
            guard !servers.isEmpty, servers.allSatisfy({ !$0.isEmpty }) else {
                throw CourierError(.invalidConfiguration, "at least one server URL is required", input: "servers")
            }
            let forbidden: Set<Character> = [".", "*", ">", " ", "\t", "\n", "/", "\\"]
            guard !stream.isEmpty, !stream.contains(where: { forbidden.contains($0) }) else {
                throw CourierError(
                    .invalidConfiguration,
                    "invalid stream name '\(stream)': it must be non-empty without '.', '*', '>', '/', '\\' or whitespace",
                    input: stream
                )
            }
            do {
                try Subjects.validate(subjectPrefix)
            } catch let error as CourierError {
                throw CourierError(
                    .invalidConfiguration, "invalid subject prefix: \(error.message)", input: subjectPrefix)
            }
            guard replicas >= 1 && replicas <= 5 else {
                throw CourierError(
                    .invalidConfiguration, "replicas must be between 1 and 5, got \(replicas)", input: "replicas")
            }
            guard publishThreads >= 1 && publishThreads <= 256 else {
                throw CourierError(
                    .invalidConfiguration, "publishThreads must be between 1 and 256, got \(publishThreads)",
                    input: "publishThreads")
            }
            guard publishWindow >= 1 else {
                throw CourierError(
                    .invalidConfiguration, "publishWindow must be at least 1, got \(publishWindow)",
                    input: "publishWindow")
            }
            guard connectTimeout > .zero, requestTimeout > .zero, duplicateWindow > .zero else {
                throw CourierError(
                    .invalidConfiguration,
                    "connectTimeout, requestTimeout and duplicateWindow must be positive",
                    input: "timeouts"
                )
            }
            if let maxEvents, maxEvents < 1 {
                throw CourierError(
                    .invalidConfiguration, "maxEvents must be positive, got \(maxEvents)", input: "maxEvents")
            }
            if let maxBytes, maxBytes < 1 {
                throw CourierError(
                    .invalidConfiguration, "maxBytes must be positive, got \(maxBytes)", input: "maxBytes")
            }
        }
    }

    /// Stream storage.
    public struct Storage: Sendable, Hashable, CustomStringConvertible {
        let isFile: Bool
        /// Persisted to disk.
        public static let file = Storage(isFile: true)
        /// Held in server memory.
        public static let memory = Storage(isFile: false)
        public var description: String { isFile ? "file" : "memory" }
    }

    /// Reconnection behaviour after a lost connection.
    public struct Reconnect: Sendable, Hashable {
        /// Attempts before giving up; `nil` retries forever.
        public var maxAttempts: Int? = nil
        /// The wait between attempts to the same server.
        public var wait: Duration = .seconds(1)
        /// Bytes of outgoing data buffered while reconnecting; publishes beyond it fail retryably.
        public var bufferBytes: Int = 8 * 1024 * 1024

        /// Creates a reconnect policy.
        public init(maxAttempts: Int? = nil, wait: Duration = .seconds(1), bufferBytes: Int = 8 * 1024 * 1024) {
            self.maxAttempts = maxAttempts
            self.wait = wait
            self.bufferBytes = bufferBytes
        }
    }

    /// Credentials.
    public struct Authentication: Sendable, Hashable {
        enum Kind: Sendable, Hashable {
            case none
            case token(String)
            case userPassword(String, String)
            case credentialsFile(String)
            case nkey(publicKey: String, seedFile: String)
        }

        let kind: Kind

        /// No credentials (or those in the URL).
        public static let none = Authentication(kind: .none)
        /// A token.
        public static func token(_ token: String) -> Authentication { Authentication(kind: .token(token)) }
        /// A user and password.
        public static func userPassword(user: String, password: String) -> Authentication {
            Authentication(kind: .userPassword(user, password))
        }
        /// A `.creds` file holding a user JWT and nkey seed.
        public static func credentialsFile(_ path: String) -> Authentication {
            Authentication(kind: .credentialsFile(path))
        }
        /// An nkey: its public key and a file holding its seed.
        public static func nkey(publicKey: String, seedFile: String) -> Authentication {
            Authentication(kind: .nkey(publicKey: publicKey, seedFile: seedFile))
        }
    }

    /// TLS settings.
    public struct TLS: Sendable, Hashable {
        /// PEM file of certificate authorities to trust.
        public var caFile: String?
        /// PEM client certificate, for mutual TLS.
        public var certificateFile: String?
        /// PEM client key, for mutual TLS.
        public var keyFile: String?
        /// The host name the server certificate must carry, when it differs from the URL's.
        public var expectedHostname: String?

        /// Creates TLS settings.
        public init(
            caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil,
            expectedHostname: String? = nil
        ) {
            self.caFile = caFile
            self.certificateFile = certificateFile
            self.keyFile = keyFile
            self.expectedHostname = expectedHostname
        }
    }
}
#endif
