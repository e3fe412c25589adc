public import Logging
public import ServiceLifecycle
import Synchronization

/// The application-facing API: convenience publishing, queries, and a registry of named
/// subscribers, on top of an ``EventPipeline`` (or any ``EventProvider``).
///
/// The bus implements no layer itself: validation, encryption, tracing and metrics belong to
/// the pipeline it is given, which every other path (ingest, routing, CloudEvents) uses too.
///
/// ```swift
/// let pipeline = MemoryProvider().validating(registry).metered()
/// let bus = EventBus(pipeline: pipeline)
/// try await bus.publish(category: "market", topic: "forex", summary: "EUR/USD", source: "reuters",
///                       payload: ["rate": 1.08])
/// ```
public final class EventBus: Service {
    /// What the bus keeps itself.
    public struct Configuration: Sendable {
        /// Where subscriber registrations are persisted.
        public var stateStore: any StateStore = MemoryStateStore()
        /// Where exhausted or terminated deliveries of registered subscribers go; `nil` uses the
        /// pipeline's.
        public var deadLetterHandler: (any DlqHandler)? = nil
        /// The logger for diagnostics.
        public var logger: Logger = Logger(label: "courier.bus")

        /// Creates the default configuration.
        public init() {}
    }

    /// The pipeline every call goes through.
    public let pipeline: any EventProvider
    /// The configuration.
    public let configuration: Configuration
    private let subscriptions = Mutex<[String: SubscriptionFilter]>([:])
    /// Changes reach the state store one at a time, in the order they were made.
    private let saves = AsyncLock()

    /// Creates a bus over `pipeline`.
    public init(pipeline: any EventProvider, configuration: Configuration = Configuration()) {
        self.pipeline = pipeline
        self.configuration = configuration
    }

    /// The pipeline's counters, when it has a metrics layer.
    public var metrics: EventMetrics? { (pipeline as? EventPipeline)?.layers.metrics }

    // MARK: Publishing

    /// Publishes an event on `<prefix>.<category>.<topic>` through the pipeline and returns it.
    /// A typed event (non-empty `eventType`) is validated when the pipeline validates.
    ///
    /// - Throws: ``CourierError/Code/invalidSubject`` naming a bad category or topic,
    ///   ``CourierError/Code/validationFailed`` when the event breaks its schema, or the
    ///   provider's error.
    @discardableResult
    public func publish(
        category: String,
        topic: String,
        eventType: String = "",
        version: Int = 1,
        summary: String = "",
        source: String = "",
        payload: JSONValue = .null,
        metadata: [String: String] = [:],
        options: PublishOptions = PublishOptions()
    ) async throws -> Event {
        let event = Event(
            subject: try pipeline.buildSubject(category: category, topic: topic),
            category: category,
            eventType: eventType,
            version: version,
            payload: payload,
            summary: summary,
            source: source,
            metadata: metadata
        )
        _ = try await pipeline.publish(event, options: options)
        return event
    }

    // MARK: Reading

    /// The newest `limit` events of `category` (every category when `nil`), oldest first, as the
    /// pipeline reads them (decrypted when it encrypts).
    public func listEvents(category: String? = nil, limit: Int = 100) async throws -> [Event] {
        let filter = try category.map { category -> String in
            try Subjects.validateToken(category, role: "category")
            return pipeline.categorySubject(category)
        }
        return try await pipeline.history(filter: filter, limit: limit)
    }

    /// Event counts per category over the newest `limit` events.
    public func counts(limit: Int = 1000) async throws -> EventCounts {
        var counts = EventCounts()
        for event in try await pipeline.history(filter: nil, limit: limit) {
            counts.total += 1
            counts.categories[event.category, default: 0] += 1
        }
        return counts
    }

    /// Provider facts.
    public func info() async throws -> ProviderInfo { try await pipeline.info() }

    /// Whether the provider is healthy.
    public func health() async -> Bool { await pipeline.health() }

    // MARK: Subscribers

    /// Restores registrations from the state store; returns how many were loaded.
    @discardableResult
    public func restoreSubscriptions() async throws -> Int {
        let loaded = try await configuration.stateStore.load()
        subscriptions.withLock { map in
            for filter in loaded { map[filter.subscriberID] = filter }
        }
        return loaded.count
    }

    /// Restores the registrations, then — when the state store is shared by several instances
    /// (``StateStore/watch()`` is not `nil`) — follows the changes the others make until the
    /// task is cancelled. Returns right after restoring for a store only this process writes.
    public func followRegistry() async throws {
        try await restoreSubscriptions()
        guard let changes = try await configuration.stateStore.watch() else { return }
        for try await registrations in changes {
            let byID = Dictionary(registrations.map { ($0.subscriberID, $0) }, uniquingKeysWith: { $1 })
            subscriptions.withLock { $0 = byID }
        }
    }

    /// Adds or replaces a subscriber registration and persists it.
    ///
    /// - Throws: ``CourierError/Code/invalidFilter`` naming a bad subject filter.
    public func updateSubscription(_ filter: SubscriptionFilter) async throws {
        guard !filter.subscriberID.isEmpty else {
            throw CourierError(.invalidConfiguration, "subscriberID must not be empty", input: filter.subscriberID)
        }
        guard !filter.subjects.isEmpty else {
            throw CourierError(
                .invalidConfiguration, "subscriber '\(filter.subscriberID)' has no subjects", input: filter.subscriberID
            )
        }
        for subject in filter.subjects { _ = try pipeline.validatedFilter(subject) }
        try filter.options?.validate()
        subscriptions.withLock { $0[filter.subscriberID] = filter }
        try await saves.run { try await configuration.stateStore.apply(.upsert(filter)) }
    }

    /// The registration of `subscriberID`.
    public func subscription(_ subscriberID: String) -> SubscriptionFilter? {
        subscriptions.withLock { $0[subscriberID] }
    }

    /// Every registration, by subscriber id.
    public func listSubscriptions() -> [SubscriptionFilter] {
        subscriptions.withLock { $0.values.sorted { $0.subscriberID < $1.subscriberID } }
    }

    /// Opens one subscription per subject of `subscriberID`'s registration, through the
    /// pipeline (so deliveries are decrypted, traced and counted as it does). Durable
    /// registrations use the consumer ``ConsumerName/forSubscriber(_:filter:)``, so they resume
    /// where they left off in any process that restored the registration.
    ///
    /// - Throws: ``CourierError/Code/notFound`` when `subscriberID` is not registered.
    public func createSubscriber(_ subscriberID: String) async throws -> [EventSubscription] {
        guard let filter = subscription(subscriberID) else {
            throw CourierError(.notFound, "no subscription registered for '\(subscriberID)'", input: subscriberID)
        }
        var options = filter.options ?? SubscribeOptions()
        if let handler = configuration.deadLetterHandler { options.deadLetterHandler = handler }
        var opened: [EventSubscription] = []
        do {
            for subject in filter.subjects {
                opened.append(
                    filter.durable
                        ? try await pipeline.subscribeDurable(
                            consumer: ConsumerName.forSubscriber(subscriberID, filter: subject), filter: subject,
                            options: options)
                        : try await pipeline.subscribe(subject, options: options)
                )
            }
        } catch {
            for subscription in opened { await subscription.close() }
            throw error
        }
        return opened
    }

    /// Removes `subscriberID`'s registration and deletes its durable consumers.
    public func removeSubscription(_ subscriberID: String) async throws {
        let removed = subscriptions.withLock { $0.removeValue(forKey: subscriberID) }
        guard let removed else {
            throw CourierError(.notFound, "no subscription registered for '\(subscriberID)'", input: subscriberID)
        }
        try await saves.run { try await configuration.stateStore.apply(.remove(subscriberID: subscriberID)) }
        if removed.durable {
            for subject in removed.subjects {
                do {
                    try await pipeline.unsubscribe(consumer: ConsumerName.forSubscriber(subscriberID, filter: subject))
                } catch let error as CourierError where error.code == .notFound {
                    continue  // never consumed: nothing to delete
                }
            }
        }
    }

    /// As a swift-service-lifecycle `Service`: follows the registry (``followRegistry()``)
    /// until graceful shutdown.
    public func run() async throws {
        try await cancelWhenGracefulShutdown { try await self.followRegistry() }
        try? await gracefulShutdown()
    }
}
