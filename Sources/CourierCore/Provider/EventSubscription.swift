/// Where a subscription's deliveries come from. Providers implement it; users consume
/// ``EventSubscription``.
public protocol EventSubscriptionSource: AnyObject, Sendable {
    /// The next delivery, waiting for one; `nil` once the subscription is closed or the
    /// calling task is cancelled.
    func next() async throws -> PendingEvent?
    /// Stops delivery. Undecided deliveries are redelivered to the consumer later. Idempotent.
    func close() async
}

/// A live subscription: an `AsyncSequence` of ``ReceivedEvent`` that acknowledges each event as it
/// hands it out, and a manual-ack sequence of ``PendingEvent`` (``manualAck``).
///
/// The auto-ack sequence acknowledges an event before your loop body runs (at-most-once
/// processing). For at-least-once processing iterate ``manualAck`` and decide each delivery.
///
/// ```swift
/// let subscription = try await provider.subscribeDurable(consumer: "billing", filter: "events.orders.>")
/// for try await pending in subscription.manualAck {
///     do { try await handle(pending.event); try await pending.ack() }
///     catch { try await pending.nak(delay: .seconds(5)) }
/// }
/// ```
///
/// Call ``close()`` when done; a subscription that is no longer referenced is closed as well.
public struct EventSubscription: AsyncSequence, Sendable {
    public typealias Element = ReceivedEvent

    /// The durable consumer name, `nil` for an ephemeral subscription.
    public let consumer: String?
    /// The subject filter.
    public let filter: String
    private let source: any EventSubscriptionSource

    /// Creates a subscription over a provider's source.
    public init(consumer: String?, filter: String, source: any EventSubscriptionSource) {
        self.consumer = consumer
        self.filter = filter
        self.source = source
    }

    /// The next delivery for a manual decision; `nil` once closed.
    public func next() async throws -> PendingEvent? {
        try await source.next()
    }

    /// Stops delivery.
    public func close() async {
        await source.close()
    }

    /// The deliveries, each awaiting ``PendingEvent/ack()``, ``PendingEvent/nak(delay:)`` or
    /// ``PendingEvent/term(reason:)``.
    public var manualAck: PendingEvents { PendingEvents(source: source) }

    /// A subscription whose deliveries pass through `transform` first. A transform returning `nil`
    /// swallows the delivery, which must then already be finalised.
    public func mapDeliveries(
        _ transform: @escaping @Sendable (PendingEvent) async throws -> PendingEvent?
    ) -> EventSubscription {
        EventSubscription(
            consumer: consumer,
            filter: filter,
            source: TransformedSubscriptionSource(base: source, transform: transform)
        )
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(source: source) }

    /// Iterates events, acknowledging each as it is returned.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let source: any EventSubscriptionSource

        public mutating func next() async throws -> ReceivedEvent? {
            guard let pending = try await source.next() else { return nil }
            try await pending.ack()
            return pending.received
        }
    }
}

/// The manual-ack view of an ``EventSubscription``.
public struct PendingEvents: AsyncSequence, Sendable {
    public typealias Element = PendingEvent
    let source: any EventSubscriptionSource

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(source: source) }

    /// Iterates deliveries without deciding them.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let source: any EventSubscriptionSource

        public mutating func next() async throws -> PendingEvent? {
            try await source.next()
        }
    }
}

/// A source whose deliveries pass through a transform.
final class TransformedSubscriptionSource: EventSubscriptionSource {
    let base: any EventSubscriptionSource
    let transform: @Sendable (PendingEvent) async throws -> PendingEvent?

    init(base: any EventSubscriptionSource, transform: @escaping @Sendable (PendingEvent) async throws -> PendingEvent?)
    {
        self.base = base
        self.transform = transform
    }

    func next() async throws -> PendingEvent? {
        while let pending = try await base.next() {
            if let transformed = try await transform(pending) { return transformed }
        }
        return nil
    }

    func close() async { await base.close() }
}

/// Outcome of waiting for a delivery.
private enum WaitOutcome: Sendable {
    case delivered(PendingEvent?)
    case timedOut
}

extension EventSubscription {
    /// The next delivery, or `nil` when none arrives within `timeout` or the subscription ends.
    ///
    /// A delivery that races the deadline is still returned, never dropped.
    public func next(timeout: Duration) async throws -> PendingEvent? {
        try await withThrowingTaskGroup(of: WaitOutcome.self) { group in
            group.addTask { .delivered(try await self.next()) }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return .timedOut
            }
            var delivered: PendingEvent?
            var first = true
            while let outcome = try await group.next() {
                if first {
                    group.cancelAll()
                    first = false
                }
                if case .delivered(let pending) = outcome, let pending { delivered = pending }
            }
            return delivered
        }
    }
}
