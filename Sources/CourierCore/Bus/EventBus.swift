public import Logging
import ServiceContextModule
import Synchronization
import Tracing

/// The application-facing API: publish, list and count events, and manage named subscribers,
/// on top of any ``EventProvider``.
///
/// Optional layers plug in through ``Configuration``: a schema registry validates typed events
/// before publishing, an encryptor encrypts payloads on publish and decrypts them on every read,
/// a dead-letter handler receives exhausted deliveries, a state store persists subscriptions, and
/// a router routes each published event.
///
/// ```swift
/// let bus = EventBus(provider: MemoryProvider())
/// try await bus.publish(category: "market", topic: "forex", summary: "EUR/USD", source: "reuters",
///                       payload: ["rate": 1.08])
/// ```
public final class EventBus: Sendable {
    /// The optional layers of a bus.
    public struct Configuration: Sendable {
        /// Where subscriber registrations are persisted.
        public var stateStore: any StateStore = MemoryStateStore()
        /// Where exhausted or terminated deliveries of bus subscribers go; `nil` uses the provider's.
        public var deadLetterHandler: (any DlqHandler)? = nil
        /// Validates typed events before they are published.
        public var schemaRegistry: (any SchemaRegistry)? = nil
        /// Encrypts payloads on publish and decrypts them on read.
        public var encryptor: (any EventEncryptor)? = nil
        /// Routes every successfully published event (inline routing).
        public var router: (any EventRouter)? = nil
        /// The logger for diagnostics.
        public var logger: Logger = Logger(label: "courier.bus")

        /// Creates the default configuration.
        public init() {}
    }

    /// The provider.
    public let provider: any EventProvider
    /// The configuration.
    public let configuration: Configuration
    /// Counters, also reported through swift-metrics.
    public let metrics: EventMetrics
    private let subscriptions = Mutex<[String: SubscriptionFilter]>([:])
    /// Saves run one at a time, each saving the registrations as they are when it starts: the
    /// last save to finish always holds every change made before it.
    private let saves = AsyncLock()

    /// Creates a bus over `provider`.
    public init(provider: any EventProvider, configuration: Configuration = Configuration()) {
        self.provider = provider
        self.configuration = configuration
        self.metrics = EventMetrics(dimensions: [("provider", provider.name)])
    }

    // MARK: Publishing

    /// Publishes an untyped event on `<prefix>.<category>.<topic>` and returns it.
    @discardableResult
    public func publish(
        category: String,
        topic: String,
        summary: String,
        source: String,
        payload: JSONValue
    ) async throws -> Event {
        try await publish(
            category: category, topic: topic, eventType: "", version: 1, summary: summary, source: source,
            payload: payload)
    }

    /// Publishes a typed event (validated against the schema registry when one is configured).
    @discardableResult
    public func publish(
        category: String,
        topic: String,
        eventType: String,
        version: Int,
        summary: String,
        source: String,
        payload: JSONValue,
        metadata: [String: String] = [:]
    ) async throws -> Event {
        let subject: String
        do {
            subject = try provider.buildSubject(category: category, topic: topic)
        } catch {
            metrics.recordPublishError()
            throw error
        }
        let event = Event(
            subject: subject,
            category: category,
            eventType: eventType,
            version: version,
            payload: payload,
            summary: summary,
            source: source,
            metadata: metadata
        )
        try await publishEvent(event)
        return event
    }

    /// Publishes a typed event whose payload is any `Encodable`.
    @discardableResult
    public func publish<Payload: Encodable>(
        category: String,
        topic: String,
        eventType: String,
        version: Int,
        summary: String,
        source: String,
        payload: Payload
    ) async throws -> Event {
        try await publish(
            category: category,
            topic: topic,
            eventType: eventType,
            version: version,
            summary: summary,
            source: source,
            payload: try JSONValue(encoding: payload)
        )
    }

    /// Validates, encrypts (when configured), publishes and routes (when configured) `event`.
    ///
    /// - Throws: ``CourierError/Code/validationFailed`` when the event breaks its schema (it is not
    ///   published and counts in ``EventMetrics/Snapshot/validationErrors``), or the provider's error.
    @discardableResult
    public func publishEvent(_ event: Event, options: PublishOptions = PublishOptions()) async throws -> PublishAck {
        // A task with a trace continues it; otherwise the event's own context (a re-published
        // event) does. The span's context travels in the event's metadata.
        guard EventTracing.isActive else { return try await publishTraced(event, options: options) }
        let parent = ServiceContext.current ?? event.traceContext
        return try await withSpan("publish \(event.subject)", context: parent, ofKind: .producer) { span in
            EventTracing.describe(span, event: event, system: provider.name, operation: "publish")
            return try await publishTraced(event.carryingTraceContext(span.context), options: options)
        }
    }

    /// Publishes `event`, which already carries its trace context when tracing is active.
    private func publishTraced(_ event: Event, options: PublishOptions) async throws -> PublishAck {
        let started = ContinuousClock.now
        do {
            if let registry = configuration.schemaRegistry {
                do {
                    try registry.validate(event)
                } catch {
                    metrics.recordValidationError()
                    throw error
                }
            }
            var stored = event
            if let encryptor = configuration.encryptor {
                do {
                    stored = try encryptor.encrypt(event)
                    metrics.recordEncrypt()
                } catch {
                    metrics.recordCryptoError()
                    throw error
                }
            }
            let ack = try await provider.publish(stored, options: options)
            metrics.recordPublish(nanoseconds: (ContinuousClock.now - started).nanoseconds)
            if let router = configuration.router, !ack.duplicate {
                do {
                    try await router.routePublished(event)
                } catch {
                    configuration.logger.error(
                        "routing failed after publish",
                        metadata: ["event": "\(event.id)", "subject": "\(event.subject)", "error": "\(error)"]
                    )
                }
            }
            return ack
        } catch {
            metrics.recordPublishError()
            throw error
        }
    }

    // MARK: Reading

    /// The newest `limit` events of `category` (every category when `nil`), oldest first, decrypted.
    public func listEvents(category: String? = nil, limit: Int = 100) async throws -> [Event] {
        let filter = try category.map { category -> String in
            try Subjects.validateToken(category, role: "category")
            return provider.categorySubject(category)
        }
        let events = try await provider.history(filter: filter, limit: limit)
        return try events.map { try decrypted($0) }
    }

    /// Event counts per category over the newest `limit` events.
    public func counts(limit: Int = 1000) async throws -> EventCounts {
        var counts = EventCounts()
        for event in try await provider.history(filter: nil, limit: limit) {
            counts.total += 1
            counts.categories[event.category, default: 0] += 1
        }
        return counts
    }

    /// Provider facts.
    public func info() async throws -> ProviderInfo { try await provider.info() }

    /// Whether the provider is healthy.
    public func health() async -> Bool { await provider.health() }

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
        for subject in filter.subjects { _ = try provider.validatedFilter(subject) }
        try filter.options?.validate()
        subscriptions.withLock { $0[filter.subscriberID] = filter }
        try await saveRegistrations()
    }

    /// Persists the registrations as they are now, after any save already under way.
    private func saveRegistrations() async throws {
        try await saves.run {
            let all = subscriptions.withLock { Array($0.values) }
            try await configuration.stateStore.save(all)
        }
    }

    /// The registration of `subscriberID`.
    public func subscription(_ subscriberID: String) -> SubscriptionFilter? {
        subscriptions.withLock { $0[subscriberID] }
    }

    /// Every registration, by subscriber id.
    public func listSubscriptions() -> [SubscriptionFilter] {
        subscriptions.withLock { $0.values.sorted { $0.subscriberID < $1.subscriberID } }
    }

    /// Opens one subscription per subject of `subscriberID`'s registration. Durable registrations
    /// use the consumer ``ConsumerName/forSubscriber(_:filter:)``, so they resume where they left
    /// off in any process that restored the registration. Deliveries are decrypted; an event that
    /// fails to decrypt is dead-lettered with the reason and skipped.
    ///
    /// - Throws: ``CourierError/Code/notFound`` when `subscriberID` is not registered.
    public func createSubscriber(_ subscriberID: String) async throws -> [EventSubscription] {
        guard let filter = subscription(subscriberID) else {
            throw CourierError(.notFound, "no subscription registered for '\(subscriberID)'", input: subscriberID)
        }
        let options = filter.options ?? SubscribeOptions()
        var opened: [EventSubscription] = []
        do {
            for subject in filter.subjects {
                opened.append(
                    filter.durable
                        ? try await subscribeDurable(
                            consumer: ConsumerName.forSubscriber(subscriberID, filter: subject), filter: subject,
                            options: options)
                        : try await subscribe(subject, options: options)
                )
            }
        } catch {
            for subscription in opened { await subscription.close() }
            throw error
        }
        return opened
    }

    /// An ephemeral subscription whose deliveries are decrypted, counted, and dead-lettered
    /// through the bus's handler.
    public func subscribe(_ filter: String, options: SubscribeOptions = SubscribeOptions()) async throws
        -> EventSubscription
    {
        let subscription = try await provider.subscribe(filter, options: busOptions(options))
        metrics.recordSubscribe()
        return wrap(subscription)
    }

    /// A durable subscription whose deliveries are decrypted, counted, and dead-lettered through
    /// the bus's handler.
    public func subscribeDurable(consumer: String, filter: String, options: SubscribeOptions = SubscribeOptions())
        async throws
        -> EventSubscription
    {
        let subscription = try await provider.subscribeDurable(
            consumer: consumer, filter: filter, options: busOptions(options))
        metrics.recordSubscribe()
        return wrap(subscription)
    }

    /// `options` with the bus's dead-letter handler (counted in ``metrics``) unless it names one.
    private func busOptions(_ options: SubscribeOptions) -> SubscribeOptions {
        var options = options
        options.deadLetterHandler = CountingDlqHandler(
            base: options.deadLetterHandler ?? configuration.deadLetterHandler ?? provider.deadLetters,
            metrics: metrics
        )
        return options
    }

    /// Removes `subscriberID`'s registration and deletes its durable consumers.
    public func removeSubscription(_ subscriberID: String) async throws {
        let removed = subscriptions.withLock { $0.removeValue(forKey: subscriberID) }
        guard let removed else {
            throw CourierError(.notFound, "no subscription registered for '\(subscriberID)'", input: subscriberID)
        }
        try await saveRegistrations()
        if removed.durable {
            for subject in removed.subjects {
                do {
                    try await provider.unsubscribe(consumer: ConsumerName.forSubscriber(subscriberID, filter: subject))
                } catch let error as CourierError where error.code == .notFound {
                    continue  // never consumed: nothing to delete
                }
            }
        }
        metrics.recordUnsubscribe()
    }

    // MARK: Helpers

    private func decrypted(_ event: Event) throws -> Event {
        guard let encryptor = configuration.encryptor, encryptor.isEncrypted(event) else { return event }
        do {
            let plain = try encryptor.decrypt(event)
            metrics.recordDecrypt()
            return plain
        } catch {
            metrics.recordCryptoError()
            throw error
        }
    }

    /// Decrypts deliveries; one that cannot be decrypted is terminated with the reason, which
    /// dead-letters it through the subscription's handler instead of redelivering it forever.
    private func wrap(_ subscription: EventSubscription) -> EventSubscription {
        let metrics = self.metrics
        let logger = configuration.logger
        return subscription.mapDeliveries { [self] pending in
            let event: Event
            do {
                event = try decrypted(pending.event)
            } catch {
                logger.warning(
                    "dead-lettering an event that cannot be decrypted",
                    metadata: ["event": "\(pending.event.id)", "sequence": "\(pending.sequence)", "error": "\(error)"]
                )
                let reason = (error as? CourierError)?.message ?? "\(error)"
                try await pending.term(reason: "decryption failed: \(reason)")
                return nil
            }
            metrics.recordConsume(latencyNanoseconds: (Event.currentTimestamp() - event.timestamp) * 1_000_000)
            guard EventTracing.isActive else { return pending.replacingEvent(event) }
            // The consume span is the parent of whatever the handler does with the event (its
            // context replaces the publisher's in the delivered event's metadata) and lasts until
            // the handler's ack, nak or term.
            let span = startSpan("consume \(event.subject)", context: event.traceContext, ofKind: .consumer)
            EventTracing.describe(span, event: event, system: provider.name, operation: "process")
            span.attributes["messaging.courier.delivery_count"] = Int(pending.deliveryCount)
            span.attributes["messaging.courier.sequence"] = Int(truncatingIfNeeded: pending.sequence)
            return pending.tracing(span, event: event.carryingTraceContext(span.context))
        }
    }
}

/// Counts dead letters in a bus's metrics on their way to the real handler.
struct CountingDlqHandler: DlqHandler {
    let base: any DlqHandler
    let metrics: EventMetrics

    func handle(_ letter: DeadLetterEvent) async throws {
        do {
            try await base.handle(letter)
            metrics.recordDeadLetter()
        } catch {
            metrics.recordDeadLetterError()
            throw error
        }
    }

    func list(limit: Int) async throws -> [DeadLetterEvent] { try await base.list(limit: limit) }
    func count() async throws -> Int { try await base.count() }
}
