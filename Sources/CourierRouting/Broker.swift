#if Routing
public import CourierCore
public import Logging
public import ServiceLifecycle
import ServiceContextModule
import Synchronization
import Tracing

/// Routes events to the sinks of the triggers whose filters they pass, retrying failing sinks
/// and dead-lettering what they never take.
///
/// A broker is a subscriber of the pipeline: ``run(_:)`` (or ``run()`` with
/// `Configuration/source` set) reads a subscription and acks an event only once every matching
/// trigger delivered or dead-lettered it; an event it could not completely route is nak'ed and
/// comes back, until the subscription's `maxDeliver` dead-letters it. The two modes differ only in
/// where the subscription's position lives:
/// - **inline** (`Source.inline`): an ephemeral subscription, new events only, position in
///   memory — routing follows publishing while the process runs;
/// - **durable** (`Source.durable`): the durable consumer `Configuration/name`, so routing
///   survives a crash and restart; brokers with one name share the consumer and split the work.
///
/// Read through an `EventPipeline` and the sinks see what the application sees (decrypted);
/// give a ``TopicSink`` the same pipeline and what it republishes is encrypted again.
///
/// Triggers can be added and removed at any time from any task. Matching is indexed (see
/// `Configuration/Matching`), so its cost follows the number of candidate triggers, not the
/// total; with only a few triggers it simply tests them all, which is cheaper. Each matching trigger gets the event once per ``route(_:)``; the sinks of one event
/// run concurrently and all see the same, unmodified event.
///
/// ```swift
/// let broker = Broker(configuration: .init(deadLetters: SinkDlqHandler(sink: dlqSink)))
/// try broker.addTrigger(Trigger(name: "paid", filter: .init(eventType: "order.paid"), sink: billing))
/// let result = await broker.route(event)   // matched, delivered, failed, deadLettered
/// ```
public final class Broker: Service {
    /// Broker settings.
    public struct Configuration: Sendable {
        /// The broker's name: its durable consumer name and its metrics dimension.
        public var name: String
        /// The delivery policy of triggers that have none of their own.
        public var delivery: DeliveryPolicy
        /// Where events go once a trigger's retries are exhausted.
        public var deadLetters: any DlqHandler
        /// Publishes reply events returned by sinks; `nil` routes them through this broker
        /// directly. Use the bus or provider publish so replies are stored like any event.
        public var publishReply: (@Sendable (Event) async throws -> Void)?
        /// An event whose hop count (metadata ``Broker/hopsMetadataKey``) reached this limit is
        /// dead-lettered instead of routed: this stops reply and republish loops.
        public var hopLimit: Int
        /// The clock retries wait on (inject a manual clock in tests).
        public var clock: any Clock<Duration>
        /// How triggers are matched.
        public var matching: Matching
        /// What ``Broker/run()`` reads; `nil` makes `run()` wait for shutdown only.
        public var source: Source?
        /// Where the broker logs.
        public var logger: Logger

        /// Creates a configuration.
        public init(
            name: String = "courier-broker",
            delivery: DeliveryPolicy = DeliveryPolicy(),
            deadLetters: any DlqHandler = MemoryDlqHandler(),
            publishReply: (@Sendable (Event) async throws -> Void)? = nil,
            hopLimit: Int = 16,
            clock: any Clock<Duration> = ContinuousClock(),
            matching: Matching = .indexed,
            source: Source? = nil,
            logger: Logger = Logger(label: "courier.broker")
        ) {
            self.name = name
            self.delivery = delivery
            self.deadLetters = deadLetters
            self.publishReply = publishReply
            self.hopLimit = hopLimit
            self.clock = clock
            self.matching = matching
            self.source = source
            self.logger = logger
        }

        /// How triggers are found for an event.
        public struct Matching: Sendable, Hashable {
            let indexed: Bool

            /// Through the trigger index (the default).
            public static let indexed = Matching(indexed: true)
            /// By testing every trigger in turn: the baseline the index is measured against.
            public static let linearScan = Matching(indexed: false)
        }

        /// Where a running broker reads its events: a subscription of a pipeline.
        public struct Source: Sendable {
            /// Where the subscription's position lives.
            public struct Position: Sendable, Hashable {
                let durable: Bool
                /// The durable consumer named after the broker: survives restarts, shared by
                /// brokers of one name.
                public static let durable = Position(durable: true)
                /// An ephemeral subscription from the first new event on: in memory, gone with the
                /// process.
                public static let inMemory = Position(durable: false)
            }

            /// The pipeline (or provider) to read from.
            public var provider: any EventProvider
            /// The subject filter to read; `nil` reads `<prefix>.>`.
            public var filter: String?
            /// Where the position lives.
            public var position: Position
            /// Subscription options (``defaultOptions`` by default). The broker dead-letters per
            /// trigger itself and naks an event only when even that failed; after `maxDeliver`
            /// such deliveries the provider dead-letters the whole event.
            public var options: SubscribeOptions
            /// How many events are routed at once.
            public var concurrency: Int
            /// The first redelivery delay of an event that could not be completely routed; it
            /// doubles with each further delivery, up to a minute.
            public var nakDelay: Duration

            /// The subscription options a broker uses unless told otherwise: ten deliveries of an
            /// event that cannot be completely routed, then it is dead-lettered.
            public static var defaultOptions: SubscribeOptions { SubscribeOptions(maxDeliver: 10) }

            /// Creates a source.
            public init(
                provider: any EventProvider,
                filter: String? = nil,
                position: Position = .durable,
                options: SubscribeOptions = Source.defaultOptions,
                concurrency: Int = 32,
                nakDelay: Duration = .seconds(1)
            ) {
                self.provider = provider
                self.filter = filter
                self.position = position
                self.options = options
                self.concurrency = concurrency
                self.nakDelay = nakDelay
            }

            /// The durable consumer named after the broker, on `provider`.
            public static func durable(_ provider: any EventProvider, filter: String? = nil) -> Source {
                Source(provider: provider, filter: filter, position: .durable)
            }

            /// An ephemeral subscription to `provider`, from the first new event on.
            public static func inline(_ provider: any EventProvider, filter: String? = nil) -> Source {
                Source(provider: provider, filter: filter, position: .inMemory)
            }
        }
    }

    /// Where a running broker reads its events.
    public typealias Source = Configuration.Source

    /// The metadata key of the hop counter: how many times an event was produced by routing
    /// (a reply or a topic republish).
    public static let hopsMetadataKey = "courier_hops"

    private struct State {
        var triggers: [CompiledTrigger] = []
        var byName: [String: CompiledTrigger] = [:]
        var index = TriggerIndex()
        var nextOrder = 0
    }

    /// The broker's settings.
    public let configuration: Configuration
    private let state = Mutex(State())
    /// Whether ``run(_:)`` has its subscription open, and who waits for that.
    private let reading = Mutex<(open: Bool, waiters: [UInt64: CheckedContinuation<Bool, Never>], next: UInt64)>(
        (false, [:], 0))

    /// Creates a broker with no triggers.
    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    // MARK: Triggers

    /// Adds `trigger`.
    ///
    /// - Throws: `CourierError/Code/alreadyExists` when a trigger of that name exists.
    public func addTrigger(_ trigger: Trigger) throws {
        let metrics = TriggerMetrics(broker: configuration.name, trigger: trigger.name)
        try state.withLock { state in
            guard state.byName[trigger.name] == nil else {
                throw CourierError(
                    .alreadyExists, "a trigger named '\(trigger.name)' already exists", input: trigger.name)
            }
            let compiled = CompiledTrigger(trigger, order: state.nextOrder, metrics: metrics)
            state.nextOrder += 1
            state.triggers.append(compiled)
            state.byName[trigger.name] = compiled
            state.index.insert(compiled)
        }
    }

    /// Removes the trigger named `name`.
    ///
    /// - Throws: `CourierError/Code/notFound` when there is none.
    public func removeTrigger(named name: String) throws {
        try state.withLock { state in
            guard let removed = state.byName.removeValue(forKey: name) else {
                throw CourierError(.notFound, "no trigger named '\(name)'", input: name)
            }
            state.triggers.removeAll { $0 === removed }
            var index = TriggerIndex()
            for trigger in state.triggers { index.insert(trigger) }
            state.index = index
        }
    }

    /// The triggers, in the order they were added.
    public var triggers: [Trigger] { state.withLock { $0.triggers.map(\.trigger) } }

    /// The counters of the trigger named `name`, if there is one.
    public func metrics(forTrigger name: String) -> TriggerMetrics.Snapshot? {
        state.withLock { $0.byName[name] }?.metrics.snapshot
    }

    /// The names of the triggers `event` matches, in the order they were added, without
    /// delivering anything.
    public func matchingTriggers(for event: Event) -> [String] { matches(event).map(\.trigger.name) }

    /// Below this many triggers the indexed mode scans: testing a handful of filters costs less
    /// than the index lookups (measured in Benchmarks/, routing suite).
    static let scanThreshold = 24

    private enum Snapshot {
        case scan([CompiledTrigger])
        case index(TriggerIndex)
    }

    private func matches(_ event: Event) -> [CompiledTrigger] {
        let indexed = configuration.matching.indexed
        let snapshot = state.withLock { state -> Snapshot in
            indexed && state.triggers.count > Self.scanThreshold ? .index(state.index) : .scan(state.triggers)
        }
        switch snapshot {
        case .index(let index): return index.matching(event)
        case .scan(let triggers): return triggers.filter { $0.matches(event) }
        }
    }

    // MARK: Routing

    /// Delivers `event` to every matching trigger, retrying and dead-lettering per delivery
    /// policy, then publishes the sinks' replies. Never throws: what could not be handled is in
    /// ``RouteResult/failed`` and ``RouteResult/failures``.
    ///
    /// Routing runs in a `route <subject>` span, a child of the task's trace or else of the trace
    /// the event carries; sinks receive the event carrying the route span's context.
    public func route(_ event: Event) async -> RouteResult {
        guard EventTracing.isActive else { return await routeTraced(event) }
        let parent = ServiceContext.current ?? event.traceContext
        return await withSpan("route \(event.subject)", context: parent, ofKind: .consumer) { span in
            EventTracing.describe(span, event: event, system: "courier", operation: "route")
            let result = await routeTraced(event.carryingTraceContext(span.context))
            span.attributes["courier.route.matched"] = result.matched.count
            span.attributes["courier.route.delivered"] = result.delivered
            span.attributes["courier.route.dead_lettered"] = result.deadLettered
            if !result.isComplete {
                span.setStatus(SpanStatus(code: .error, message: result.failures.joined(separator: "; ")))
            }
            return result
        }
    }

    private func routeTraced(_ event: Event) async -> RouteResult {
        var result = RouteResult()
        let hops = Self.hops(of: event)
        if hops >= configuration.hopLimit {
            let reason = "hop limit \(configuration.hopLimit) reached (routing loop?)"
            await deadLetter(event, reason: reason, attempts: 0, consumer: configuration.name, into: &result)
            return result
        }
        let matched = matches(event)
        guard !matched.isEmpty else { return result }
        result.matched = matched.map(\.trigger.name)
        for trigger in matched { trigger.metrics.recordMatched() }

        var outcomes: [Outcome]
        if matched.count == 1 {
            outcomes = [await deliver(event, to: matched[0])]
        } else {
            outcomes = Array(repeating: .failed(""), count: matched.count)
            await withTaskGroup(of: (Int, Outcome).self) { group in
                for (position, trigger) in matched.enumerated() {
                    group.addTask { (position, await self.deliver(event, to: trigger)) }
                }
                for await (position, outcome) in group { outcomes[position] = outcome }
            }
        }

        for (trigger, outcome) in zip(matched, outcomes) {
            switch outcome {
            case .delivered(nil):
                result.delivered += 1
            case .delivered(var reply?):
                result.delivered += 1
                reply.metadata[Self.hopsMetadataKey] = String(hops + 1)
                await publish(reply, from: trigger.trigger.name, into: &result)
            case .deadLettered:
                result.deadLettered += 1
            case .failed(let failure):
                result.failed += 1
                result.failures.append(failure)
            }
        }
        return result
    }

    /// The hop count of `event` (0 when it has none).
    public static func hops(of event: Event) -> Int {
        event.metadata[hopsMetadataKey].flatMap { Int($0) } ?? 0
    }

    private enum Outcome: Sendable {
        case delivered(Event?)
        case deadLettered
        case failed(String)
    }

    private func deliver(_ event: Event, to compiled: CompiledTrigger) async -> Outcome {
        let trigger = compiled.trigger
        let policy = trigger.delivery ?? configuration.delivery
        let started = ContinuousClock.now
        let attempts = policy.retries + 1
        var firstFailureAt: Int64?
        var lastError: any Error = CourierError(.deliveryFailed, "no attempt made")
        for attempt in 1...attempts {
            if attempt > 1 {
                compiled.metrics.recordRetry()
                do {
                    try await configuration.clock.sleep(for: policy.backoff.delay(beforeRetry: attempt - 1))
                } catch {
                    compiled.metrics.recordFailed()
                    return .failed("trigger '\(trigger.name)': cancelled before retry \(attempt - 1)")
                }
            }
            do {
                let reply = try await attemptDelivery(event, to: trigger.sink, timeout: policy.attemptTimeout)
                compiled.metrics.recordDelivered(nanoseconds: (ContinuousClock.now - started).nanosecondsClamped)
                return .delivered(reply)
            } catch {
                if firstFailureAt == nil { firstFailureAt = Event.currentTimestamp() }
                lastError = error
                if Task.isCancelled {
                    compiled.metrics.recordFailed()
                    return .failed("trigger '\(trigger.name)': cancelled during attempt \(attempt): \(error)")
                }
                configuration.logger.warning(
                    "sink failed",
                    metadata: [
                        "trigger": "\(trigger.name)", "sink": "\(trigger.sink.description)", "event": "\(event.id)",
                        "attempt": "\(attempt)/\(attempts)", "error": "\(error)",
                    ]
                )
            }
        }
        let letter = DeadLetterEvent(
            event: event,
            reason:
                "trigger '\(trigger.name)': sink \(trigger.sink.description) failed \(attempts) time(s): \(lastError)",
            attempts: attempts,
            consumer: trigger.name,
            firstFailureAt: firstFailureAt
        )
        do {
            try await configuration.deadLetters.handle(letter)
            compiled.metrics.recordDeadLettered()
            return .deadLettered
        } catch {
            compiled.metrics.recordFailed()
            configuration.logger.error(
                "dead-lettering failed; the event is not handled",
                metadata: ["trigger": "\(trigger.name)", "event": "\(event.id)", "error": "\(error)"]
            )
            return .failed("trigger '\(trigger.name)': sink failed (\(lastError)) and dead-lettering failed (\(error))")
        }
    }

    private func attemptDelivery(_ event: Event, to sink: any EventSink, timeout: Duration?) async throws -> Event? {
        guard let timeout else { return try await sink.deliver(event) }
        return try await withDeadline(timeout, clock: configuration.clock, what: "sink \(sink.description)") {
            try await sink.deliver(event)
        }
    }

    private func publish(_ reply: Event, from trigger: String, into result: inout RouteResult) async {
        if Self.hops(of: reply) >= configuration.hopLimit {
            let reason = "reply of trigger '\(trigger)': hop limit \(configuration.hopLimit) reached (routing loop?)"
            await deadLetter(reply, reason: reason, attempts: 0, consumer: trigger, into: &result)
            return
        }
        guard let publishReply = configuration.publishReply else {
            let nested = await route(reply)
            result.replies += 1
            result.failed += nested.failed
            result.failures += nested.failures
            return
        }
        do {
            try await publishReply(reply)
            result.replies += 1
        } catch {
            await deadLetter(
                reply,
                reason: "reply of trigger '\(trigger)' could not be published: \(error)",
                attempts: 1,
                consumer: trigger,
                into: &result
            )
        }
    }

    private func deadLetter(
        _ event: Event, reason: String, attempts: Int, consumer: String, into result: inout RouteResult
    ) async {
        configuration.logger.warning("dead-lettering", metadata: ["event": "\(event.id)", "reason": "\(reason)"])
        do {
            try await configuration.deadLetters.handle(
                DeadLetterEvent(event: event, reason: reason, attempts: attempts, consumer: consumer)
            )
            result.deadLettered += 1
        } catch {
            result.failed += 1
            result.failures.append("\(reason); dead-lettering failed: \(error)")
        }
    }

    // MARK: Running

    /// Runs the broker until graceful shutdown: reading `Configuration/source` when it is set,
    /// else only waiting (``route(_:)`` can still be called directly).
    public func run() async throws {
        if let source = configuration.source {
            try await run(source)
        } else {
            try await gracefulShutdown()
        }
    }

    /// Reads `source` until graceful shutdown or cancellation, routing each event and acking it
    /// only once it is completely routed; an incompletely routed event is nak'ed and comes back
    /// after `Source/nakDelay` (doubling per delivery). While an event is being routed its ack
    /// deadline is extended.
    public func run(_ source: Source) async throws {
        guard source.concurrency >= 1 else {
            throw CourierError(.invalidConfiguration, "concurrency must be at least 1", input: "concurrency")
        }
        let filter = source.filter ?? "\(source.provider.subjectPrefix).>"
        let consumer = try ConsumerName.sanitize(configuration.name)
        let subscription =
            if source.position.durable {
                try await source.provider.subscribeDurable(consumer: consumer, filter: filter, options: source.options)
            } else {
                try await source.provider.subscribe(filter, options: source.options)
            }
        setReading(true)
        defer { setReading(false) }
        let mode = source.position.durable ? "durable" : "inline"
        configuration.logger.info(
            "broker started", metadata: ["mode": "\(mode)", "consumer": "\(consumer)", "filter": "\(filter)"])
        defer { configuration.logger.info("broker stopped", metadata: ["consumer": "\(consumer)"]) }
        do {
            try await withGracefulShutdownHandler {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    var running = 0
                    for try await pending in subscription.manualAck {
                        if running >= source.concurrency {
                            try await group.next()
                            running -= 1
                        }
                        group.addTask { await self.handle(pending, source: source) }
                        running += 1
                    }
                    try await group.waitForAll()
                }
            } onGracefulShutdown: {
                Task { await subscription.close() }
            }
        } catch {
            await subscription.close()
            throw error
        }
        await subscription.close()
    }

    /// Waits until a running broker has its subscription open — in inline mode, events published
    /// from then on are routed — or `timeout` passes; returns whether it is open.
    public func waitUntilReading(timeout: Duration = .seconds(30)) async -> Bool {
        let id = reading.withLock { reading -> UInt64 in
            reading.next += 1
            return reading.next
        }
        return await withCheckedContinuation { continuation in
            let open = reading.withLock { reading -> Bool in
                if reading.open { return true }
                reading.waiters[id] = continuation
                return false
            }
            if open {
                continuation.resume(returning: true)
                return
            }
            Task {
                try? await Task.sleep(for: timeout)
                let waiter = self.reading.withLock { $0.waiters.removeValue(forKey: id) }
                waiter?.resume(returning: false)
            }
        }
    }

    /// Records whether the subscription is open and, when it opened, wakes the waiters.
    private func setReading(_ open: Bool) {
        let waiters = reading.withLock { reading -> [CheckedContinuation<Bool, Never>] in
            reading.open = open
            guard open else { return [] }
            defer { reading.waiters.removeAll() }
            return Array(reading.waiters.values)
        }
        for waiter in waiters { waiter.resume(returning: true) }
    }

    private func handle(_ pending: PendingEvent, source: Source) async {
        let event = pending.event
        let heartbeat = source.options.ackWait / 2
        let result = await withTaskGroup(of: RouteResult?.self) { group in
            group.addTask {
                while true {
                    do { try await Task.sleep(for: heartbeat) } catch { return nil }
                    try? await pending.inProgress()
                }
            }
            group.addTask { await self.route(event) }
            var routed = RouteResult()
            for await outcome in group {
                if let outcome {
                    routed = outcome
                    group.cancelAll()
                }
            }
            return routed
        }
        do {
            if result.isComplete {
                try await pending.ack()
            } else {
                configuration.logger.warning(
                    "event not completely routed; it will be redelivered",
                    metadata: ["event": "\(event.id)", "failures": "\(result.failures)"]
                )
                let doubling = min(max(pending.deliveryCount - 1, 0), 6)
                try await pending.nak(delay: min(source.nakDelay * (1 << doubling), .seconds(60)))
            }
        } catch {
            configuration.logger.error(
                "could not settle delivery", metadata: ["event": "\(event.id)", "error": "\(error)"])
        }
    }
}

extension Duration {
    /// The duration in nanoseconds, clamped to `Int64`.
    var nanosecondsClamped: Int64 {
        let (seconds, attoseconds) = components
        guard seconds < Int64.max / 1_000_000_000 else { return .max }
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

#endif
