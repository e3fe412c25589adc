/// A backend that stores and delivers events: ``MemoryProvider`` (embedded) or the JetStream
/// provider (trait `NATS`). Both pass the same conformance suite in `CourierTesting`.
///
/// Subjects are `<subjectPrefix>.<category>.<topic>`; filters use NATS wildcards (``SubjectFilter``).
public protocol EventProvider: Sendable {
    /// A short name: `"memory"`, `"jetstream"`.
    var name: String { get }
    /// The subject prefix, `events` by default.
    var subjectPrefix: String { get }
    /// Where exhausted or terminated deliveries go when a subscription names no handler of its own.
    var deadLetters: any DlqHandler { get }

    /// Stores `event` on its subject and returns the stream sequence.
    ///
    /// The dedupe id is ``PublishOptions/messageID`` or else the event id: publishing the same
    /// event again inside the duplicate window returns the original sequence with
    /// ``PublishAck/duplicate`` set.
    func publish(_ event: Event, options: PublishOptions) async throws -> PublishAck

    /// Publishes `events` (each deduplicated by its event id) and returns each one's result, in
    /// order. Providers that can pipeline do (JetStream keeps a window of publishes in flight and
    /// stores a batch in order); the default publishes one after the other.
    func publishBatch(_ events: [Event], timeout: Duration?) async -> [Result<PublishAck, CourierError>]

    /// An ephemeral subscription: by default it sees events published after it starts. It ends
    /// when closed.
    func subscribe(_ filter: String, options: SubscribeOptions) async throws -> EventSubscription

    /// A subscription to the durable consumer `consumer`, created on first use. The consumer keeps
    /// its position when the subscription closes and resumes there. Several subscriptions to one
    /// consumer share its events.
    func subscribeDurable(consumer: String, filter: String, options: SubscribeOptions) async throws
        -> EventSubscription

    /// The newest `limit` stored events matching `filter` (all subjects when `nil`), oldest first.
    func history(filter: String?, limit: Int) async throws -> [Event]

    /// Deletes the durable consumer `consumer` and its position.
    ///
    /// - Throws: ``CourierError/Code/notFound`` when there is no such consumer.
    func unsubscribe(consumer: String) async throws

    /// Stream and connection facts.
    func info() async throws -> ProviderInfo

    /// Whether the provider can publish and deliver right now.
    func health() async -> Bool

    /// `<subjectPrefix>.<category>.<topic>`, validated.
    func buildSubject(category: String, topic: String) throws -> String

    /// The filter for every topic of `category`: `<subjectPrefix>.<category>.>`.
    func categorySubject(_ category: String) -> String

    /// Stops the provider: subscriptions end and later calls fail with ``CourierError/Code/closed``.
    func shutdown() async
}

extension EventProvider {
    public func buildSubject(category: String, topic: String) throws -> String {
        try Subjects.build(prefix: subjectPrefix, category: category, topic: topic)
    }

    public func categorySubject(_ category: String) -> String {
        Subjects.categoryFilter(prefix: subjectPrefix, category: category)
    }

    public func shutdown() async {}

    public func publishBatch(_ events: [Event], timeout: Duration?) async -> [Result<PublishAck, CourierError>] {
        var results: [Result<PublishAck, CourierError>] = []
        results.reserveCapacity(events.count)
        for event in events {
            do {
                results.append(.success(try await publish(event, options: PublishOptions(timeout: timeout))))
            } catch {
                results.append(.refused(error))
            }
        }
        return results
    }

    /// Publishes `events` with the provider's default timeout; see ``publishBatch(_:timeout:)``.
    public func publishBatch(_ events: [Event]) async -> [Result<PublishAck, CourierError>] {
        await publishBatch(events, timeout: nil)
    }

    /// Publishes with default options.
    @discardableResult
    public func publish(_ event: Event) async throws -> PublishAck {
        try await publish(event, options: PublishOptions())
    }

    /// An ephemeral subscription with default options (new events only).
    public func subscribe(_ filter: String) async throws -> EventSubscription {
        try await subscribe(filter, options: SubscribeOptions())
    }

    /// A durable subscription with default options.
    public func subscribeDurable(consumer: String, filter: String) async throws -> EventSubscription {
        try await subscribeDurable(consumer: consumer, filter: filter, options: SubscribeOptions())
    }

    /// Runs `body` with a durable subscription and closes it afterwards, also when `body` throws or
    /// the task is cancelled.
    public func withDurableSubscription<R: Sendable>(
        consumer: String,
        filter: String,
        options: SubscribeOptions = SubscribeOptions(),
        _ body: (EventSubscription) async throws -> R
    ) async throws -> R {
        let subscription = try await subscribeDurable(consumer: consumer, filter: filter, options: options)
        do {
            let result = try await body(subscription)
            await subscription.close()
            return result
        } catch {
            await subscription.close()
            throw error
        }
    }

    /// Validates a filter for this provider: well-formed and able to match subjects under the prefix.
    public func validatedFilter(_ filter: String) throws -> SubjectFilter {
        let parsed = try SubjectFilter(filter)
        guard parsed.canMatch(under: subjectPrefix) else {
            throw CourierError.invalidFilter(filter, "it can never match a subject under '\(subjectPrefix).'")
        }
        return parsed
    }
}

/// Facts about a provider's stream and connection.
public struct ProviderInfo: Sendable, Hashable, Codable {
    /// The provider name.
    public var provider: String
    /// The stream name.
    public var stream: String
    /// The subject prefix.
    public var subjectPrefix: String
    /// Stored events.
    public var messages: UInt64
    /// Stored bytes.
    public var bytes: UInt64
    /// The oldest stored sequence (0 when empty).
    public var firstSequence: UInt64
    /// The newest sequence ever stored.
    public var lastSequence: UInt64
    /// Durable consumers.
    public var consumers: Int
    /// The connection state: `embedded`, `connected`, `reconnecting`, `closed`, …
    public var state: String
    /// Provider-specific details (server version, URL, counters).
    public var details: [String: String]
    /// Where the stream is replicated, when the provider replicates it (a clustered JetStream
    /// stream); `nil` for a provider or stream without replicas.
    public var replicaSet: ReplicaSet?

    /// The servers holding a replicated stream.
    public struct ReplicaSet: Sendable, Hashable, Codable {
        /// The cluster's name.
        public var cluster: String?
        /// The server leading the stream (taking its writes), `nil` while it has none.
        public var leader: String?
        /// The other servers holding a copy.
        public var followers: [Follower]

        /// A server holding a copy of the stream.
        public struct Follower: Sendable, Hashable, Codable {
            /// The server's name.
            public var name: String
            /// Whether its copy is up to date with the leader.
            public var current: Bool
            /// Whether the leader considers it offline.
            public var offline: Bool
            /// How many operations its copy is behind the leader.
            public var lag: UInt64
            /// Nanoseconds since the leader last heard from it.
            public var lastSeenNanoseconds: Int64

            /// Creates a follower's facts.
            public init(name: String, current: Bool, offline: Bool, lag: UInt64, lastSeenNanoseconds: Int64) {
                self.name = name
                self.current = current
                self.offline = offline
                self.lag = lag
                self.lastSeenNanoseconds = lastSeenNanoseconds
            }
        }

        /// Creates replica-set facts.
        public init(cluster: String?, leader: String?, followers: [Follower]) {
            self.cluster = cluster
            self.leader = leader
            self.followers = followers
        }
    }

    /// Creates provider information.
    public init(
        provider: String,
        stream: String,
        subjectPrefix: String,
        messages: UInt64,
        bytes: UInt64,
        firstSequence: UInt64,
        lastSequence: UInt64,
        consumers: Int,
        state: String,
        details: [String: String] = [:],
        replicaSet: ReplicaSet? = nil
    ) {
        self.provider = provider
        self.stream = stream
        self.subjectPrefix = subjectPrefix
        self.messages = messages
        self.bytes = bytes
        self.firstSequence = firstSequence
        self.lastSequence = lastSequence
        self.consumers = consumers
        self.state = state
        self.details = details
        self.replicaSet = replicaSet
    }
}

/// Event counts per category.
public struct EventCounts: Sendable, Hashable, Codable {
    /// Events counted.
    public var total: Int
    /// Events per category.
    public var categories: [String: Int]

    /// Creates counts.
    public init(total: Int = 0, categories: [String: Int] = [:]) {
        self.total = total
        self.categories = categories
    }
}
