import DequeModule
public import Logging
import Synchronization

/// The embedded provider: a bounded in-process stream with durable consumers.
///
/// It is a faithful provider, not a stub. Sequences increase monotonically; the log is bounded
/// by ``Configuration/maxEvents``, ``Configuration/maxBytes`` and ``Configuration/maxAge`` (oldest
/// dropped first); publishes are deduplicated by message id within a window; consumers keep their
/// position, honour every ``DeliverPolicy``, redeliver after their ack wait (with backoff), honour
/// `nak(delay:)`, `maxAckPending` and `maxDeliver`, and dead-letter exhausted or terminated events.
///
/// Publishers never wait for subscribers. Every subscription, ephemeral or durable, reads from
/// the retained log at its own pace; an event a consumer had not yet read when retention dropped
/// it is counted in ``ProviderInfo/details`` under `eventsMissed` (and per consumer) instead of
/// vanishing silently.
public final class MemoryProvider: EventProvider {
    /// Limits and behaviour of the embedded stream.
    public struct Configuration: Sendable {
        /// The stream name reported in ``ReceivedEvent/stream``.
        public var stream: String = "MEMORY"
        /// The subject prefix.
        public var subjectPrefix: String = Subjects.defaultPrefix
        /// The most events kept.
        public var maxEvents: Int = 1_000_000
        /// The most bytes (of wire JSON) kept.
        public var maxBytes: Int = 512 * 1024 * 1024
        /// How long events are kept; `nil` keeps them until a size limit drops them.
        public var maxAge: Duration? = nil
        /// How long a message id is remembered for dedupe.
        public var duplicateWindow: Duration = .seconds(120)
        /// The largest event accepted, in bytes of wire JSON (NATS' default `max_payload`).
        public var maxPayloadBytes: Int = 1024 * 1024
        /// Where exhausted and terminated deliveries go unless a subscription names its own.
        public var deadLetterHandler: any DlqHandler = MemoryDlqHandler()
        /// The logger for diagnostics.
        public var logger: Logger = Logger(label: "courier.memory")

        /// Creates the default configuration.
        public init() {}
    }

    public let name = "memory"
    /// The configuration the provider was created with.
    public let configuration: Configuration
    public var subjectPrefix: String { configuration.subjectPrefix }
    /// The provider's dead-letter handler.
    public var deadLetters: any DlqHandler { configuration.deadLetterHandler }

    private let state: Mutex<MemoryStreamState>
    private let waiterIDs = Atomic<UInt64>(0)

    /// Creates an empty provider.
    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
        self.state = Mutex(MemoryStreamState(configuration: configuration))
    }

    // MARK: Publish

    public func publish(_ event: Event, options: PublishOptions) async throws -> PublishAck {
        try publishNow(event, options: options)
    }

    /// Publishes without suspending (the memory provider never waits).
    @discardableResult
    package func publishNow(_ event: Event, options: PublishOptions = PublishOptions()) throws -> PublishAck {
        let size = event.wireSize
        try checkPublishable(event, size: size)
        // Hashed, and the stored form boxed, before the lock is taken.
        let messageID = MessageID(options.messageID ?? event.id)
        let body = StoredEvent.Body.event(event)
        let (ack, wake) = try state.withLock { state in
            try state.append(body, subject: event.subject, size: size, messageID: messageID, options: options)
        }
        for waiter in wake { waiter.resume() }
        return ack
    }

    /// Appends a batch of events in their wire form under one lock: what the ingest core's
    /// provider adapter calls. Each event's bytes are checked as ``publish(_:options:)`` checks
    /// an event (they must decode as a valid event under the stream's prefix, within
    /// ``Configuration/maxPayloadBytes``) without being decoded; the bytes are kept as they are
    /// and decoded when delivered. A resent batch (same ``WireBatch/key``) stores only the
    /// events it did not store before. Returns each one's result, in order.
    package func publishNow(wire batch: WireBatch) -> [Result<PublishAck, CourierError>] {
        var failures = [CourierError?](repeating: nil, count: batch.bytes.count)
        var subjects = [String?](repeating: nil, count: batch.bytes.count)
        for index in batch.bytes.indices {
            do {
                let bytes = batch.bytes[index]
                let subject = try Event.checkWire(
                    bytes, subjectHint: batch.subjects[index], subjectHintIsValid: batch.subjectsAreValid)
                try checkPublishable(subject: subject, id: nil, size: bytes.count)
                subjects[index] = subject
            } catch {
                failures[index] = error as? CourierError ?? CourierError(.invalidEvent, "\(error)")
            }
        }
        let (acks, wake, closed) = state.withLock {
            state -> ([PublishAck?], [CheckedContinuation<Void, Never>], CourierError?) in
            guard !state.closed else { return ([], [], state.closedError()) }
            var wake: [CheckedContinuation<Void, Never>] = []
            let acks = state.append(batch, subjects: subjects, now: WallClock.nowNanoseconds(), wake: &wake)
            return (acks, wake, nil)
        }
        for waiter in wake { waiter.resume() }
        return batch.bytes.indices.map { index in
            if let failure = failures[index] { return .failure(failure) }
            if let closed { return .failure(closed) }
            return .success(acks[index]!)
        }
    }

    /// Throws unless `event` is valid, under the stream's prefix and at most `size` ≤
    /// ``Configuration/maxPayloadBytes``.
    private func checkPublishable(_ event: Event, size: Int) throws {
        try event.validate()
        try checkPublishable(subject: event.subject, id: event.id, size: size)
    }

    /// Throws unless `subject` is under the stream's prefix and `size` ≤
    /// ``Configuration/maxPayloadBytes``.
    private func checkPublishable(subject: String, id: String?, size: Int) throws {
        guard subject.hasPrefix(subjectPrefix + ".") else {
            throw CourierError.invalidSubject(subject, "it is outside the stream's subjects '\(subjectPrefix).>'")
        }
        guard size <= configuration.maxPayloadBytes else {
            throw CourierError(
                .payloadTooLarge,
                "event \(id.map { "\($0) " } ?? "")on '\(subject)' is \(size) bytes; the maximum is \(configuration.maxPayloadBytes)",
                input: subject
            )
        }
    }

    // MARK: Subscribe

    public func subscribe(_ filter: String, options: SubscribeOptions) async throws -> EventSubscription {
        let parsed = try validatedFilter(filter)
        try options.validate()
        let name = try state.withLock { state in
            try state.createConsumer(name: nil, filter: parsed, options: options, policy: options.deliverPolicy ?? .new)
        }
        return EventSubscription(
            consumer: nil,
            filter: filter,
            source: MemorySubscription(
                provider: self, consumer: name, deadLetters: options.deadLetterHandler ?? deadLetters)
        )
    }

    public func subscribeDurable(consumer: String, filter: String, options: SubscribeOptions) async throws
        -> EventSubscription
    {
        let parsed = try validatedFilter(filter)
        try options.validate()
        let name = try ConsumerName.sanitize(consumer)
        _ = try state.withLock { state in
            try state.createConsumer(
                name: name, filter: parsed, options: options, policy: options.deliverPolicy ?? .all)
        }
        return EventSubscription(
            consumer: name,
            filter: filter,
            source: MemorySubscription(
                provider: self, consumer: name, deadLetters: options.deadLetterHandler ?? deadLetters)
        )
    }

    public func unsubscribe(consumer: String) async throws {
        let name = try ConsumerName.sanitize(consumer)
        let wake = try state.withLock { state in
            guard let removed = state.consumers.removeValue(forKey: name), removed.durable else {
                throw CourierError(
                    .notFound, "no durable consumer '\(consumer)' on stream \(configuration.stream)", input: consumer)
            }
            removed.deleted = true
            return removed.takeWaiters()
        }
        for waiter in wake { waiter.resume() }
    }

    // MARK: Queries

    public func history(filter: String?, limit: Int) async throws -> [Event] {
        let parsed = try filter.map { try validatedFilter($0) }
        guard limit > 0 else { return [] }
        let found = try state.withLock { state in
            guard !state.closed else { throw state.closedError() }
            var found: [StoredEvent] = []
            for stored in state.log.reversed() where parsed?.matches(stored.subject) ?? true {
                found.append(stored)
                if found.count == limit { break }
            }
            return found
        }
        return found.reversed().map(\.event)
    }

    public func info() async throws -> ProviderInfo {
        state.withLock { state in
            ProviderInfo(
                provider: name,
                stream: configuration.stream,
                subjectPrefix: subjectPrefix,
                messages: UInt64(state.log.count),
                bytes: UInt64(state.bytes),
                firstSequence: state.log.first?.sequence ?? 0,
                lastSequence: state.lastSequence,
                consumers: state.consumers.values.filter(\.durable).count,
                state: state.closed ? "closed" : "embedded",
                details: [
                    "eventsMissed": String(state.eventsMissed),
                    "deadLettered": String(state.deadLettered),
                    "deadLetterFailures": String(state.deadLetterFailures),
                    "deadLettersAbandoned": String(state.deadLettersAbandoned),
                    "duplicatesRejected": String(state.duplicates),
                    "subscriptions": String(state.consumers.count),
                ]
            )
        }
    }

    /// Delivery counters of one consumer: delivered, acknowledged, pending, missed.
    public func consumerInfo(_ consumer: String) throws -> [String: UInt64] {
        let name = try ConsumerName.sanitize(consumer)
        return try state.withLock { state in
            guard let c = state.consumers[name] else {
                throw CourierError(.notFound, "no consumer '\(consumer)'", input: consumer)
            }
            return [
                "delivered": c.delivered, "acknowledged": c.acknowledged, "pending": UInt64(c.pending.count),
                "missed": c.missed, "nextSequence": c.nextSequence,
            ]
        }
    }

    public func health() async -> Bool { state.withLock { !$0.closed } }

    public func shutdown() async {
        let wake = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.closed = true
            for consumer in state.consumers.values { consumer.deleted = true }
            return state.consumers.values.flatMap { $0.takeWaiters() }
        }
        for waiter in wake { waiter.resume() }
    }

    // MARK: Delivery (used by MemorySubscription and MemoryDelivery)

    fileprivate func nextDelivery(for subscription: MemorySubscription) async throws -> PendingEvent? {
        while true {
            if Task.isCancelled || subscription.isClosed || subscription.consumerEnded { return nil }
            // One clock read per turn, outside the provider's lock: the publisher waits on it.
            let now = ContinuousClock.now
            if let fetched = subscription.takeFetched(now: now) { return pendingEvent(fetched, for: subscription) }
            let step = state.withLock {
                $0.step(consumer: subscription.consumer, now: now, limit: MemorySubscription.fetchLimit)
            }
            switch step {
            case .closed:
                return nil
            case .deliver(let deliveries):
                subscription.keepFetched(deliveries.dropFirst())
                return pendingEvent(deliveries[0], for: subscription)
            case .deadLetter(let jobs):
                for job in jobs { await deadLetter(job, handler: subscription.deadLetters) }
            case .wait(let generation, let lastSequence, let deadline):
                await wait(
                    consumer: subscription.consumer, generation: generation, lastSequence: lastSequence,
                    deadline: deadline)
            }
        }
    }

    /// A delivery as a ``PendingEvent``, its event decoded here, outside the lock.
    private func pendingEvent(_ delivery: MemoryDelivery, for subscription: MemorySubscription) -> PendingEvent {
        PendingEvent(
            received: ReceivedEvent(
                event: delivery.stored.event, sequence: delivery.stored.sequence, deliveryCount: delivery.deliveries,
                stream: configuration.stream),
            backend: MemoryDeliveryHandle(
                provider: self, subscription: subscription, sequence: delivery.stored.sequence)
        )
    }

    fileprivate func apply(_ action: AckAction, sequence: UInt64, subscription: MemorySubscription) async throws {
        // Read outside the lock, and only for a decision that reschedules: an ack needs no time.
        let now: ContinuousClock.Instant? =
            switch action {
            case .ack, .doubleAck: nil
            default: .now
            }
        let (job, wake) = try state.withLock { state in
            try state.apply(action, sequence: sequence, consumer: subscription.consumer, now: now)
        }
        for waiter in wake { waiter.resume() }
        if let job { await deadLetter(job, handler: subscription.deadLetters) }
    }

    fileprivate func closeSubscription(_ subscription: MemorySubscription) {
        let unused = subscription.takeAllFetched()
        let wake = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            var wake = state.undeliver(unused, consumer: subscription.consumer, now: .now)
            guard let consumer = state.consumers[subscription.consumer] else { return wake }
            consumer.subscriptions -= 1
            if !consumer.durable, consumer.subscriptions <= 0 {
                state.consumers[subscription.consumer] = nil
                consumer.deleted = true
            }
            wake += consumer.takeWaiters()
            return wake
        }
        for waiter in wake { waiter.resume() }
    }

    /// Counts a subscription to `consumer`; returns the flag that says the consumer ended.
    fileprivate func attachSubscription(to consumer: String) -> ConsumerEnd? {
        state.withLock { state in
            guard let consumer = state.consumers[consumer] else { return nil }
            consumer.subscriptions += 1
            return consumer.end
        }
    }

    private func deadLetter(_ job: DeadLetterJob, handler: any DlqHandler) async {
        do {
            try await handler.handle(job.letter)
            state.withLock { $0.deadLettered += 1 }
        } catch {
            configuration.logger.error(
                "dead-letter handler failed; the event stays pending and the hand-off is retried",
                metadata: [
                    "consumer": "\(job.consumer)", "sequence": "\(job.sequence)",
                    "subject": "\(job.letter.originalSubject)",
                    "error": "\(error)",
                ]
            )
            let wake = state.withLock { $0.requeueDeadLetter(job, now: .now) }
            for waiter in wake { waiter.resume() }
        }
    }

    private func wait(
        consumer: String, generation: UInt64, lastSequence: UInt64, deadline: ContinuousClock.Instant?
    ) async {
        let id = waiterIDs.add(1, ordering: .relaxed).newValue
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let registered = state.withLock { state -> Bool in
                    guard !state.closed, !Task.isCancelled, let c = state.consumers[consumer],
                        c.generation == generation, state.lastSequence == lastSequence
                    else { return false }
                    c.waiters[id] = MemoryConsumer.Waiter(continuation: continuation)
                    return true
                }
                guard registered else {
                    continuation.resume()
                    return
                }
                guard let deadline else { return }
                let timer = Task { [weak self] in
                    try? await Task.sleep(until: deadline, clock: .continuous)
                    self?.wake(consumer: consumer, waiter: id)
                }
                let keep = state.withLock { state -> Bool in
                    guard let c = state.consumers[consumer], c.waiters[id] != nil else { return false }
                    c.waiters[id]?.timer = timer
                    return true
                }
                if !keep { timer.cancel() }
            }
        } onCancel: {
            wake(consumer: consumer, waiter: id)
        }
    }

    private func wake(consumer: String, waiter id: UInt64) {
        let waiter = state.withLock { $0.consumers[consumer]?.waiters.removeValue(forKey: id) }
        waiter?.timer?.cancel()
        waiter?.continuation.resume()
    }
}

// MARK: - Subscription and delivery handles

/// One subscription to a memory consumer.
///
/// It fetches up to ``fetchLimit`` new deliveries per visit to the provider's lock and hands
/// them out one by one, as a JetStream pull subscription fetches a batch: the publisher and the
/// consumer then contend for that lock once per batch instead of once per event. A fetched
/// delivery whose ack wait ran out before it was handed out is dropped (the consumer redelivers
/// it), and closing returns the ones never handed out, uncounted.
final class MemorySubscription: EventSubscriptionSource {
    /// The most new deliveries fetched at once.
    static let fetchLimit = 32

    let provider: MemoryProvider
    let consumer: String
    let deadLetters: any DlqHandler
    private let closed = Atomic<Bool>(false)
    private let fetched = Mutex<Deque<MemoryDelivery>>([])
    private let consumerEnd: ConsumerEnd?

    init(provider: MemoryProvider, consumer: String, deadLetters: any DlqHandler) {
        self.provider = provider
        self.consumer = consumer
        self.deadLetters = deadLetters
        self.consumerEnd = provider.attachSubscription(to: consumer)
    }

    /// Whether the consumer was deleted or the provider shut down: what was fetched from it is
    /// not handed out any more.
    var consumerEnded: Bool { consumerEnd?.isSet ?? true }

    var isClosed: Bool { closed.load(ordering: .acquiring) }

    /// The oldest fetched delivery still within its ack wait.
    func takeFetched(now: ContinuousClock.Instant) -> MemoryDelivery? {
        fetched.withLock { fetched in
            while let delivery = fetched.popFirst() {
                if delivery.dueAt > now { return delivery }
            }
            return nil
        }
    }

    func keepFetched(_ deliveries: ArraySlice<MemoryDelivery>) {
        guard !deliveries.isEmpty else { return }
        fetched.withLock { $0.append(contentsOf: deliveries) }
    }

    func takeAllFetched() -> [MemoryDelivery] {
        fetched.withLock { fetched in
            defer { fetched.removeAll() }
            return Array(fetched)
        }
    }

    func next() async throws -> PendingEvent? {
        try await provider.nextDelivery(for: self)
    }

    func close() async { closeNow() }

    private func closeNow() {
        guard closed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
            return
        }
        provider.closeSubscription(self)
    }

    deinit { closeNow() }
}

/// The decisions on one delivery from a memory consumer.
struct MemoryDeliveryHandle: DeliveryBackend {
    let provider: MemoryProvider
    let subscription: MemorySubscription
    let sequence: UInt64

    func send(_ action: AckAction) async throws {
        try await provider.apply(action, sequence: sequence, subscription: subscription)
    }
}
