import Instrumentation
public import Logging
import ServiceContextModule

/// An ``EventProvider`` with Courier's layers around it: schema validation, payload encryption,
/// distributed tracing and metrics. Build it once and use it everywhere — the ``EventBus``, the
/// ingest adapters, the broker and its sinks, CloudEvents — so no path to the provider can skip a
/// layer.
///
/// ```swift
/// let pipeline = provider.validating(registry).encrypting(encryptor).traced().metered()
/// let bus = EventBus(pipeline: pipeline)
/// ```
///
/// The order the layers are added in does not matter: they always run in one order, kept here.
/// On publish: metrics → tracing → validation → encryption → provider (so validation sees the
/// plaintext and the schema, encryption the validated event). On delivery: provider → decryption
/// → tracing → metrics → your handler. Dead letters go through the same layers: a pipeline that
/// encrypts stores them encrypted.
public final class EventPipeline: EventProvider {
    /// The layers a pipeline has.
    public struct Layers: Sendable {
        /// Validates typed events before they are published.
        public var schemaRegistry: (any SchemaRegistry)?
        /// Encrypts payloads on publish and decrypts them on delivery and history.
        public var encryptor: (any EventEncryptor)?
        /// Starts publish and consume spans and carries the trace context with events.
        public var tracing = false
        /// Counts publishes, deliveries and dead letters.
        public var metrics: EventMetrics?

        /// No layers.
        public init() {}

        /// Whether a layer changes the events themselves (validation can refuse them, encryption
        /// rewrites their payload, tracing adds context): paths that publish pre-serialised bytes
        /// must then decode, pass them through the layers and encode them again.
        public var transformsEvents: Bool { schemaRegistry != nil || encryptor != nil || tracing }
    }

    /// The provider under the layers.
    public let base: any EventProvider
    /// The layers.
    public let layers: Layers
    /// Where layers log.
    public let logger: Logger
    /// The composed layers, outermost first in the call path.
    private let chain: any EventProvider

    /// A pipeline over `base` with `layers`. When `base` is itself a pipeline, its layers are
    /// merged into these (later ones win).
    public init(base: any EventProvider, layers: Layers = Layers(), logger: Logger = Logger(label: "courier.pipeline"))
    {
        var merged = layers
        var provider = base
        if let inner = base as? EventPipeline {
            provider = inner.base
            merged.schemaRegistry = layers.schemaRegistry ?? inner.layers.schemaRegistry
            merged.encryptor = layers.encryptor ?? inner.layers.encryptor
            merged.tracing = layers.tracing || inner.layers.tracing
            merged.metrics = layers.metrics ?? inner.layers.metrics
        }
        self.base = provider
        self.layers = merged
        self.logger = logger
        self.chain = Self.assemble(provider, merged, logger: logger)
    }

    /// The one place that decides the order of the layers (see the type's documentation).
    private static func assemble(_ base: any EventProvider, _ layers: Layers, logger: Logger) -> any EventProvider {
        var chain = base
        if let encryptor = layers.encryptor {
            chain = EncryptionLayer(base: chain, encryptor: encryptor, metrics: layers.metrics, logger: logger)
        }
        if let registry = layers.schemaRegistry {
            chain = ValidationLayer(base: chain, registry: registry, metrics: layers.metrics)
        }
        if layers.tracing { chain = TracingLayer(base: chain) }
        if let metrics = layers.metrics { chain = MetricsLayer(base: chain, metrics: metrics) }
        return chain
    }

    private func adding(_ change: (inout Layers) -> Void) -> EventPipeline {
        var next = layers
        change(&next)
        return EventPipeline(base: base, layers: next, logger: logger)
    }

    /// This pipeline, also validating typed events against `registry` before publishing.
    public func validating(_ registry: any SchemaRegistry) -> EventPipeline { adding { $0.schemaRegistry = registry } }
    /// This pipeline, also encrypting payloads with `encryptor` (and decrypting deliveries).
    public func encrypting(_ encryptor: any EventEncryptor) -> EventPipeline { adding { $0.encryptor = encryptor } }
    /// This pipeline, also tracing publishes and deliveries.
    public func traced() -> EventPipeline { adding { $0.tracing = true } }
    /// This pipeline, also counting into `metrics` (by default new counters with a `provider`
    /// dimension).
    public func metered(_ metrics: EventMetrics? = nil) -> EventPipeline {
        adding { $0.metrics = metrics ?? EventMetrics(dimensions: [("provider", base.name)]) }
    }

    /// `event` as the layers would hand it to the provider: traced, validated, encrypted. For
    /// paths that publish serialised bytes themselves (the ingest core's JetStream adapter).
    ///
    /// - Throws: the validation or encryption error.
    public func prepareForProvider(_ event: Event) throws -> Event {
        var event = event
        if layers.tracing, EventTracing.isActive { event = event.carryingTraceContext(.current ?? .topLevel) }
        if let registry = layers.schemaRegistry {
            do {
                try registry.validate(event)
            } catch {
                layers.metrics?.recordValidationError()
                throw error
            }
        }
        if let encryptor = layers.encryptor {
            event = try EncryptionLayer(base: base, encryptor: encryptor, metrics: layers.metrics, logger: logger)
                .encrypted(event)
        }
        return event
    }

    // MARK: EventProvider, through the layers

    public var name: String { chain.name }
    public var subjectPrefix: String { chain.subjectPrefix }
    public var deadLetters: any DlqHandler { chain.deadLetters }

    public func publish(_ event: Event, options: PublishOptions) async throws -> PublishAck {
        try await chain.publish(event, options: options)
    }

    public func publishBatch(_ events: [Event], timeout: Duration?) async -> [Result<PublishAck, CourierError>] {
        await chain.publishBatch(events, timeout: timeout)
    }

    public func subscribe(_ filter: String, options: SubscribeOptions) async throws -> EventSubscription {
        try await chain.subscribe(filter, options: options)
    }

    public func subscribeDurable(consumer: String, filter: String, options: SubscribeOptions) async throws
        -> EventSubscription
    {
        try await chain.subscribeDurable(consumer: consumer, filter: filter, options: options)
    }

    public func history(filter: String?, limit: Int) async throws -> [Event] {
        try await chain.history(filter: filter, limit: limit)
    }

    public func unsubscribe(consumer: String) async throws { try await chain.unsubscribe(consumer: consumer) }
    public func info() async throws -> ProviderInfo { try await chain.info() }
    public func health() async -> Bool { await chain.health() }
    public func shutdown() async { await chain.shutdown() }
}

extension EventProvider {
    /// A pipeline over this provider.
    private var pipeline: EventPipeline { self as? EventPipeline ?? EventPipeline(base: self) }

    /// A pipeline over this provider that validates typed events against `registry`.
    public func validating(_ registry: any SchemaRegistry) -> EventPipeline { pipeline.validating(registry) }
    /// A pipeline over this provider that encrypts payloads with `encryptor`.
    public func encrypting(_ encryptor: any EventEncryptor) -> EventPipeline { pipeline.encrypting(encryptor) }
    /// A pipeline over this provider that traces publishes and deliveries.
    public func traced() -> EventPipeline { pipeline.traced() }
    /// A pipeline over this provider that counts into `metrics`.
    public func metered(_ metrics: EventMetrics? = nil) -> EventPipeline { pipeline.metered(metrics) }
}
