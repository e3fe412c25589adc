#if NATS
public import CourierCore
import Logging
import Synchronization

/// The production provider: NATS JetStream through the C client cnats.
///
/// Connecting creates the stream (capturing `<prefix>.>`) when it is missing and otherwise uses
/// it as the operator configured it (``Configuration/provisioning`` says what else connecting may
/// do); the dead-letter stream is provisioned alongside. Events are stored in their JSON wire form, identical to the memory
/// provider's, with `Nats-Msg-Id` set to the dedupe id. Publishing is pipelined (async publish
/// with a bounded window, retried with the same message id); consumption uses push consumers
/// bound to durable consumers created with `js_AddConsumer`, so they survive restarts and are
/// shared by every subscription with the same name.
///
/// ```swift
/// let provider = try await JetStreamProvider.connect(.init(url: "nats://127.0.0.1:4222"))
/// let bus = EventBus(pipeline: provider)
/// ```
public final class JetStreamProvider: EventProvider {
    public let name = "jetstream"
    /// The configuration the provider was connected with.
    public let configuration: Configuration
    public var subjectPrefix: String { configuration.subjectPrefix }
    /// The provider's dead-letter handler: ``Configuration/deadLetterHandler``, else the
    /// dead-letter stream (``deadLetterQueue``).
    public var deadLetters: any DlqHandler { configuration.deadLetterHandler ?? deadLetterQueue }
    /// The dead-letter stream: list, count and replay what was dead-lettered.
    public var deadLetterQueue: JetStreamDeadLetterQueue { JetStreamDeadLetterQueue(provider: self) }

    let connection: NATSConnection
    /// The threads synchronous publishes block on. A task that publishes in a loop can prefer it
    /// (`withTaskExecutorPreference(provider.executor) { … }`) to avoid a thread hop per publish.
    public var executor: any TaskExecutor { publishExecutor }
    let publishExecutor: BlockingExecutor
    /// Durable subscriptions found stalled and subscribed again.
    let stallRecoveries = Atomic<UInt64>(0)
    /// The event stream as connecting found or created it.
    let eventStream: StreamFacts
    /// Whether the event stream takes atomic batches (nats-server 2.12+, `allow_atomic`).
    let atomicBatches: Bool
    /// The dead-letter stream's name and subject prefix.
    let deadLetterStreamName: String
    let deadLetterPrefix: String
    /// The subject prefix with its trailing dot: every event's subject starts with it.
    let subjectPrefixDot: String
    /// The lifecycle (running, shutting down, closed) and the open subscriptions.
    private let state = Mutex(ProviderStateMachine())

    private init(
        configuration: Configuration, connection: NATSConnection, eventStream: StreamFacts, atomicBatches: Bool
    ) {
        self.configuration = configuration
        self.connection = connection
        self.eventStream = eventStream
        self.atomicBatches = atomicBatches
        self.deadLetterStreamName = configuration.deadLetterStream.streamName(eventStream: configuration.stream)
        self.deadLetterPrefix = configuration.deadLetterStream.prefix(eventPrefix: configuration.subjectPrefix)
        self.subjectPrefixDot = configuration.subjectPrefix + "."
        self.publishExecutor = BlockingExecutor(threads: configuration.publishThreads)
    }

    /// Connects, then provisions the event stream and the dead-letter stream as
    /// ``Configuration/provisioning`` allows (by default: create what is missing, change nothing
    /// that exists).
    ///
    /// - Throws: `CourierError` naming the URL when no server answers within the connect
    ///   timeout, the field when an existing stream cannot serve Courier, the stream when it is
    ///   missing and may not be created, or the bad setting.
    public static func connect(_ configuration: Configuration) async throws -> JetStreamProvider {
        try configuration.validate()
        let connection = try await Blocking.run { try NATSConnection(configuration: configuration) }
        do {
            // A stream (or the meta group) electing a leader answers nothing for a few seconds,
            // and a cluster that just started may not place replicas on a peer until that peer
            // reported its statistics (every 30 s once settled): provisioning retries timeouts,
            // "no responders" and "no suitable peers" for up to 60 s, then fails.
            let eventStream = try await retryingWhileElecting(for: .seconds(60), logger: configuration.logger) {
                let facts = try StreamProvisioner.ensure(
                    StreamSpec(eventStreamOf: configuration), provisioning: configuration.provisioning,
                    connection: connection, timeout: configuration.requestTimeout, logger: configuration.logger)
                if configuration.deadLetterHandler == nil {
                    _ = try StreamProvisioner.ensure(
                        StreamSpec(deadLetterStreamOf: configuration, eventReplicas: facts.replicas),
                        provisioning: configuration.provisioning, connection: connection,
                        timeout: configuration.requestTimeout, logger: configuration.logger)
                }
                return facts
            }
            // A feature probe: when it cannot be answered, publish per message rather than fail.
            var atomicBatches = false
            if configuration.atomicBatchPublish {
                do {
                    atomicBatches = try await retryingWhileElecting(for: .seconds(60), logger: configuration.logger) {
                        try StreamProvisioner.atomicBatches(
                            stream: configuration.stream, created: eventStream.created, connection: connection,
                            timeout: configuration.requestTimeout, logger: configuration.logger)
                    }
                } catch {
                    configuration.logger.warning(
                        "cannot tell whether the stream takes atomic batches; ingest batches are published per message",
                        metadata: ["stream": "\(configuration.stream)", "error": "\(error)"])
                }
            }
            configuration.logger.info(
                "connected to JetStream",
                metadata: [
                    "url": "\(connection.currentURL)", "stream": "\(configuration.stream)",
                    "replicas": "\(eventStream.replicas)", "server": "\(connection.serverVersion)",
                    "atomicBatches": "\(atomicBatches)",
                ]
            )
            return JetStreamProvider(
                configuration: configuration, connection: connection, eventStream: eventStream,
                atomicBatches: atomicBatches)
        } catch {
            _ = try? await Blocking.run { connection.close(flushTimeout: .milliseconds(100)) }
            throw error
        }
    }

    /// Runs `body` (blocking) again after a retryable failure, pausing 100 ms doubling to 1 s,
    /// until `bound` has passed; then the last failure is thrown.
    private static func retryingWhileElecting<T: Sendable>(
        for bound: Duration, logger: Logger, _ body: @escaping @Sendable () throws -> T
    ) async throws -> T {
        let deadline = ContinuousClock.now + bound
        var pause = Duration.milliseconds(100)
        while true {
            do {
                return try await Blocking.run(body)
            } catch let error as CourierError where error.isRetryable && ContinuousClock.now + pause < deadline {
                logger.notice(
                    "provisioning failed; retrying", metadata: ["error": "\(error)", "retryIn": "\(pause)"])
                try await Task.sleep(for: pause)
                pause = min(pause * 2, .seconds(1))
            }
        }
    }

    func closedError() -> CourierError? {
        guard !state.withLock({ $0.isRunning }) else { return nil }
        return CourierError(
            .shutdown, "JetStream provider for stream \(configuration.stream) is shut down",
            input: configuration.stream)
    }

    func ensureOpen() throws {
        if let error = closedError() { throw error }
    }

    /// Runs `body` with this provider on a blocking-call thread, once the provider is known to
    /// be running.
    func blocking<T: Sendable>(_ body: @escaping @Sendable (JetStreamProvider) throws -> T) async throws -> T {
        try ensureOpen()
        return try await Blocking.run { try body(self) }
    }

    /// Deliveries a closed subscription received but never handed out are nak'ed with this delay,
    /// so the server redelivers them to a live subscriber once it has noticed the closed one is gone.
    static let handBackDelay: Duration = .milliseconds(500)

    // MARK: Subscribing

    public func subscribe(_ filter: String, options: SubscribeOptions) async throws -> EventSubscription {
        try ensureOpen()
        let parsed = try validatedFilter(filter)
        try options.validate()
        let config = ConsumerSettings(
            durable: nil,
            filter: streamFilter(parsed),
            options: options,
            policy: try await resolved(options.deliverPolicy ?? .new),
            stream: configuration.stream
        )
        let source = try await bind(config, options: options, consumerName: "ephemeral")
        return EventSubscription(consumer: nil, filter: filter, source: source)
    }

    public func subscribeDurable(consumer: String, filter: String, options: SubscribeOptions) async throws
        -> EventSubscription
    {
        try ensureOpen()
        let parsed = try validatedFilter(filter)
        try options.validate()
        let name = try ConsumerName.sanitize(consumer)
        let config = ConsumerSettings(
            durable: name,
            filter: streamFilter(parsed),
            options: options,
            policy: try await resolved(options.deliverPolicy ?? .all),
            stream: configuration.stream
        )
        try await Blocking.run { try self.ensureDurable(config, requested: filter) }
        let source = try await bind(config, options: options, consumerName: name)
        return EventSubscription(consumer: name, filter: filter, source: source)
    }

    /// A start-time policy resolved to the start sequence it means right now.
    private func resolved(_ policy: DeliverPolicy) async throws -> DeliverPolicy {
        guard case .startTime(let nanoseconds) = policy.kind else { return policy }
        return .startSequence(try await Blocking.run { try self.sequence(atOrAfter: nanoseconds) })
    }

    /// The consumer filter for the stream: `nil` when it covers every subject under the prefix,
    /// with leading wildcards narrowed to the prefix (the server only accepts subsets).
    func streamFilter(_ filter: SubjectFilter) -> String? {
        let prefixTokens = subjectPrefix.split(separator: ".").map(String.init)
        var tokens = filter.pattern.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        for (i, prefixToken) in prefixTokens.enumerated() {
            guard i < tokens.count else { break }
            if tokens[i] == ">" {
                tokens = prefixTokens + [">"]
                break
            }
            if tokens[i] == "*" { tokens[i] = prefixToken }
        }
        let narrowed = tokens.joined(separator: ".")
        return narrowed == subjectPrefix + ".>" ? nil : narrowed
    }

    /// A subscription that delivers raw messages with their headers instead of decoded events:
    /// to the durable consumer `consumer`, or ephemeral (new messages only by default) when `nil`.
    public func subscribeMessages(consumer: String?, filter: String, options: SubscribeOptions = SubscribeOptions())
        async throws
        -> MessageSubscription
    {
        try ensureOpen()
        let parsed = try validatedFilter(filter)
        try options.validate()
        let name = try consumer.map { try ConsumerName.sanitize($0) }
        let config = ConsumerSettings(
            durable: name,
            filter: streamFilter(parsed),
            options: options,
            policy: try await resolved(options.deliverPolicy ?? (name == nil ? .new : .all)),
            stream: configuration.stream
        )
        if name != nil { try await Blocking.run { try self.ensureDurable(config, requested: filter) } }
        let source = try await bind(config, options: options, consumerName: name ?? "ephemeral", wantsHeaders: true)
        return MessageSubscription(source: source)
    }

    private func bind(
        _ config: ConsumerSettings,
        options: SubscribeOptions,
        consumerName: String,
        wantsHeaders: Bool = false
    ) async throws -> JetStreamSubscription {
        let connection = self.connection
        let inbox = DeliveryInbox(wantsHeaders: wantsHeaders) { message in
            try? connection.acknowledge(message, bytes: nakBody(delay: Self.handBackDelay))
        }
        let handle = try await Blocking.run { try self.subscribeNative(config, inbox: inbox) }
        let subscription = JetStreamSubscription(
            connection: connection,
            inbox: inbox,
            handle: handle,
            consumer: consumerName,
            durable: config.durable != nil,
            options: options,
            deadLetters: options.deadLetterHandler ?? deadLetters,
            prefix: subjectPrefix,
            stream: configuration.stream,
            logger: configuration.logger,
            requestTimeout: configuration.requestTimeout,
            onClose: { [weak self] subscription in
                self?.state.withLock { $0.unregister(subscription) }
            }
        )
        if case .close = state.withLock({ $0.register(subscription) }) {
            await subscription.close()
            throw closedError()
                ?? CourierError(.shutdown, "JetStream provider is shut down", input: configuration.stream)
        }
        if let durable = config.durable {
            let ackWait = options.ackWait
            subscription.watchForStalls(
                every: min(max(ackWait / 2, .seconds(1)), .seconds(15)),
                after: max(ackWait * 2, .seconds(10)),
                progress: { [weak self] in
                    guard let self else { throw CourierError(.shutdown, "the provider is gone", input: durable) }
                    return try await self.blocking { try $0.consumerProgress(durable) }
                },
                resubscribe: { [weak self] in
                    guard let self else { throw CourierError(.shutdown, "the provider is gone", input: durable) }
                    return try await self.blocking { try $0.subscribeNative(config, inbox: inbox) }
                },
                stalled: { [weak self] in self?.stallRecoveries.add(1, ordering: .relaxed) })
        }
        return subscription
    }

    /// Drops the server-side interest of every open subscription to durable consumer `consumer`
    /// without ending them, as a lost queue subscription does, so tests can watch the stall
    /// watch resubscribe.
    package func dropDeliveryInterest(consumer: String) {
        for subscription in state.withLock({ $0.openSubscriptions }) where subscription.durable {
            if subscription.consumer == consumer { subscription.dropInterest() }
        }
    }

    public func unsubscribe(consumer: String) async throws {
        try ensureOpen()
        let name = try ConsumerName.sanitize(consumer)
        try await Blocking.run { try self.deleteConsumer(name, requested: consumer) }
    }

    // MARK: Queries

    public func history(filter: String?, limit: Int) async throws -> [Event] {
        try ensureOpen()
        let parsed = try filter.map { try validatedFilter($0) }
        guard limit > 0 else { return [] }
        let subjectFilter = parsed.flatMap { streamFilter($0) }
        return try await Blocking.run { try self.readHistory(filter: subjectFilter, limit: limit) }
    }

    /// Waits until every publish in flight was acknowledged (or failed); `false` if `timeout`
    /// passed first.
    public func waitForPublishes(timeout: Duration) async -> Bool {
        await connection.publisher.waitUntilIdle(timeout: timeout)
    }

    /// Up to `limit` stored messages from stream sequence `sequence` on, oldest first, with their
    /// dedupe ids: what the ingest adapter reads back.
    public func readStored(from sequence: UInt64, limit: Int) async throws -> [StoredMessage] {
        try ensureOpen()
        return try await Blocking.run { try self.readStored(from: sequence, limit: limit) }
    }

    public func info() async throws -> ProviderInfo {
        try ensureOpen()
        let stream = try await Blocking.run { try self.streamState() }
        let events = connection.events
        let atomic: [String: String] = [
            "atomicBatches": atomicBatches ? "on" : "off",
            "atomicBatchCommits": String(connection.batches.commits.load(ordering: .relaxed)),
            "atomicBatchFallbacks": String(connection.batches.fallbacks.load(ordering: .relaxed)),
        ]
        var details: [String: String] = [
            "url": connection.currentURL,
            "server": connection.serverVersion,
            "storage": stream.storage,
            "replicas": String(stream.replicas),
            "deadLetterStream": deadLetterStreamName,
            "disconnects": String(events.disconnects.load(ordering: .relaxed)),
            "reconnects": String(events.reconnects.load(ordering: .relaxed)),
            "asyncErrors": String(events.asyncErrors.load(ordering: .relaxed)),
            "publishRetries": String(connection.publisher.retryCount),
            "publishReorders": String(connection.publisher.reorderCount),
            "publishesInFlight": String(connection.publisher.inFlight),
            "subscriptionStalls": String(stallRecoveries.load(ordering: .relaxed)),
        ]
        details.merge(atomic) { $1 }
        return ProviderInfo(
            provider: name,
            stream: configuration.stream,
            subjectPrefix: subjectPrefix,
            messages: stream.messages,
            bytes: stream.bytes,
            firstSequence: stream.firstSequence,
            lastSequence: stream.lastSequence,
            consumers: stream.consumers,
            state: connection.stateDescription,
            details: details,
            replicaSet: stream.replicaSet
        )
    }

    public func health() async -> Bool {
        state.withLock { $0.isRunning } && connection.isConnected
    }

    /// Stops accepting publishes, waits (up to `drainTimeout`) for in-flight publishes to be
    /// acknowledged, closes every subscription (buffered deliveries are handed back), flushes
    /// pending acknowledgements and closes the connection.
    public func shutdown(drainTimeout: Duration) async {
        guard case .drain(let subscriptions) = state.withLock({ $0.beginShutdown() }) else { return }
        if !(await connection.publisher.waitUntilIdle(timeout: drainTimeout)) {
            configuration.logger.warning(
                "shutdown: publishes still unacknowledged after the drain timeout",
                metadata: ["inFlight": "\(connection.publisher.inFlight)"]
            )
        }
        for subscription in subscriptions { await subscription.close() }
        let connection = self.connection
        _ = try? await Blocking.run { connection.close(flushTimeout: drainTimeout) }
        state.withLock { $0.finishShutdown() }
        let executor = self.publishExecutor
        Blocking.detach { executor.shutdown() }
    }

    public func shutdown() async {
        await shutdown(drainTimeout: .seconds(10))
    }

    /// Connection counters: disconnects, reconnects and asynchronous errors seen so far.
    public var connectionEvents: (disconnects: UInt64, reconnects: UInt64, asyncErrors: UInt64) {
        let events = connection.events
        return (
            events.disconnects.load(ordering: .relaxed), events.reconnects.load(ordering: .relaxed),
            events.asyncErrors.load(ordering: .relaxed)
        )
    }
}
#endif

#if NATS
public import ServiceLifecycle

extension JetStreamProvider: Service {
    /// Keeps the connection until graceful shutdown (or cancellation), then shuts down with
    /// `Configuration/shutdownDrainTimeout`: in-flight publishes are awaited, subscriptions
    /// closed with their buffered deliveries handed back, and pending acknowledgements flushed
    /// before the connection closes.
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown(drainTimeout: configuration.shutdownDrainTimeout)
    }
}
#endif
