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
        /// What connecting may do to the stream: by default it creates a missing stream and
        /// never changes an existing one (see ``StreamProvisioning``). The storage, replica and
        /// limit settings below are what a created stream gets (and what
        /// ``StreamProvisioning/updateLimits`` brings an existing one to).
        public var provisioning: StreamProvisioning = .createIfMissing
        /// File or memory storage of a created stream.
        public var storage: Storage = .file
        /// Replicas of a created stream (1 on a single server, 3 on a cluster for durability).
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
        /// Whether the ingest adapter's batches (``JetStreamAdapter``) are published as atomic
        /// batches when the server (nats-server 2.12+) and the stream (`allow_atomic`) allow
        /// it: up to 1 000 messages stored all or nothing, with one acknowledgement. A stream
        /// Courier creates on such a server gets `allow_atomic`; an existing one is never
        /// changed, so without `allow_atomic` batches go per message.
        /// ``JetStreamProvider/publishBatch(_:timeout:)`` always publishes per message.
        public var atomicBatchPublish: Bool = true
        /// Threads that synchronous publishes block on while awaiting their acknowledgement:
        /// how many ``JetStreamProvider/publish(_:options:)`` calls can wait at once.
        public var publishThreads: Int = 4
        /// Where exhausted or undecodable deliveries go unless a subscription names its own;
        /// `nil` stores them in the dead-letter stream (``deadLetterStream``), where no ordinary
        /// subscription sees them.
        public var deadLetterHandler: (any DlqHandler)? = nil
        /// The stream dead letters are kept in when ``deadLetterHandler`` is `nil`: its own
        /// stream, subject space and retention. Connecting provisions it like the event stream.
        public var deadLetterStream: DeadLetterStream = DeadLetterStream()
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
            try deadLetterStream.validate(eventStream: stream, eventPrefix: subjectPrefix)
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

    /// What connecting may do to the stream it uses.
    ///
    /// Streams belong to their operators. Two services with different defaults must never fight
    /// over one stream, so by default Courier creates a missing stream and leaves an existing one
    /// exactly as it is: it checks the stream captures `<prefix>.>` with limits retention, logs
    /// (at notice) where it differs from the configuration, and fails with an error naming the
    /// field only when Courier cannot work with it.
    public struct StreamProvisioning: Sendable, Hashable, CustomStringConvertible {
        enum Kind: Sendable, Hashable {
            case createIfMissing
            case updateLimits(allowFewerReplicas: Bool)
            case requireExisting
        }

        let kind: Kind

        /// Creates a missing stream; never changes an existing one (the default).
        public static let createIfMissing = StreamProvisioning(kind: .createIfMissing)
        /// Creates a missing stream; brings an existing one's limits (`maxEvents`, `maxBytes`,
        /// `maxAge`, duplicate window) to the configuration and raises its replicas to the
        /// configured count. It never lowers replicas.
        public static let updateLimits = StreamProvisioning(kind: .updateLimits(allowFewerReplicas: false))
        /// As ``updateLimits``, and lowers the replicas of an existing stream when the
        /// configuration asks for fewer: fewer copies survive fewer node failures.
        public static let updateLimitsAllowingFewerReplicas = StreamProvisioning(
            kind: .updateLimits(allowFewerReplicas: true))
        /// Binds to an existing stream only: connecting fails when it is missing.
        public static let requireExisting = StreamProvisioning(kind: .requireExisting)

        public var description: String {
            switch kind {
            case .createIfMissing: "createIfMissing"
            case .updateLimits(false): "updateLimits"
            case .updateLimits(true): "updateLimitsAllowingFewerReplicas"
            case .requireExisting: "requireExisting"
            }
        }

        /// Whether connecting may create a missing stream.
        var mayCreate: Bool { kind != .requireExisting }
    }

    /// Where the JetStream provider keeps dead letters: a stream of its own whose subjects lie
    /// outside the event stream's, so no ordinary subscription ever receives a dead letter.
    ///
    /// A letter for an event on `events.orders.created` is stored on
    /// `<subjectPrefix>.events.orders.created` (by default `events-dlq.events.orders.created`)
    /// with the reason, attempts, consumer and original sequence in its metadata.
    public struct DeadLetterStream: Sendable, Hashable {
        /// The stream name; `nil` is `<event stream>_DLQ`.
        public var name: String?
        /// The subject prefix; `nil` is `<event prefix>-dlq`.
        public var subjectPrefix: String?
        /// How long letters are kept; `nil` keeps them until removed. Default: 14 days.
        public var maxAge: Duration? = .seconds(14 * 24 * 3600)
        /// The most bytes of letters kept; `nil` is unlimited.
        public var maxBytes: Int64? = nil
        /// Replicas of a created dead-letter stream; `nil` is as many as the event stream has.
        public var replicas: Int? = nil

        /// The default dead-letter stream.
        public init(name: String? = nil, subjectPrefix: String? = nil) {
            self.name = name
            self.subjectPrefix = subjectPrefix
        }

        /// The stream name for the event stream `stream`.
        public func streamName(eventStream stream: String) -> String { name ?? stream + "_DLQ" }

        /// The subject prefix for the event prefix `prefix`.
        public func prefix(eventPrefix prefix: String) -> String { subjectPrefix ?? prefix + "-dlq" }

        func validate(eventStream: String, eventPrefix: String) throws {
            let name = streamName(eventStream: eventStream)
            let prefix = self.prefix(eventPrefix: eventPrefix)
            let forbidden: Set<Character> = [".", "*", ">", " ", "\t", "\n", "/", "\\"]
            guard !name.isEmpty, !name.contains(where: { forbidden.contains($0) }), name != eventStream else {
                throw CourierError(
                    .invalidConfiguration, "invalid dead-letter stream name '\(name)'", input: "deadLetterStream.name")
            }
            do {
                try Subjects.validate(prefix)
            } catch let error as CourierError {
                throw CourierError(
                    .invalidConfiguration, "invalid dead-letter subject prefix: \(error.message)",
                    input: "deadLetterStream.subjectPrefix")
            }
            let overlaps =
                ((try? SubjectFilter(prefix + ".>").canMatch(under: eventPrefix)) ?? true)
                || ((try? SubjectFilter(eventPrefix + ".>").canMatch(under: prefix)) ?? true)
            guard !overlaps else {
                throw CourierError(
                    .invalidConfiguration,
                    "dead-letter subjects '\(prefix).>' overlap the event subjects '\(eventPrefix).>': ordinary subscriptions would receive dead letters",
                    input: "deadLetterStream.subjectPrefix")
            }
            if let replicas, !(1...5).contains(replicas) {
                throw CourierError(
                    .invalidConfiguration, "dead-letter replicas must be between 1 and 5, got \(replicas)",
                    input: "deadLetterStream.replicas")
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
    ///
    /// Nothing Courier sends waits in cnats' reconnect buffer: a publish buffered while
    /// reconnecting would be flushed after the reconnect, ahead of earlier publishes lost with the
    /// old connection, and overtake them. Instead, publishes fail retryably while the connection
    /// is down (and are resent in order once it is back), and acknowledgements wait for the
    /// connection (at most the request timeout) before they are sent.
    public struct Reconnect: Sendable, Hashable {
        /// Attempts before giving up; `nil` retries forever.
        public var maxAttempts: Int? = nil
        /// The wait between attempts to the same server.
        public var wait: Duration = .seconds(1)

        /// Creates a reconnect policy.
        public init(maxAttempts: Int? = nil, wait: Duration = .seconds(1)) {
            self.maxAttempts = maxAttempts
            self.wait = wait
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
