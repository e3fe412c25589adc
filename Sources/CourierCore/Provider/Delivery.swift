import Synchronization
import Tracing

/// An event as a subscriber receives it.
public struct ReceivedEvent: Sendable, Hashable {
    /// The event.
    public var event: Event
    /// Its stream sequence.
    public var sequence: UInt64
    /// How many times it has been delivered to this consumer, 1 for the first delivery.
    public var deliveryCount: Int
    /// The stream that stores it.
    public var stream: String

    /// Creates a received event.
    public init(event: Event, sequence: UInt64, deliveryCount: Int, stream: String) {
        self.event = event
        self.sequence = sequence
        self.deliveryCount = deliveryCount
        self.stream = stream
    }
}

/// How a delivery is finalised (or, for ``inProgress``, extended).
public enum AckAction: Sendable, Hashable {
    /// Processed: never deliver again.
    case ack
    /// Processed, and the provider confirms it recorded the acknowledgement before the call
    /// returns (JetStream's "double ack").
    case doubleAck
    /// Not processed: deliver again after `delay` (at once when `nil`).
    case nak(delay: Duration?)
    /// Still working: restart the ack-wait timer. Does not finalise.
    case inProgress
    /// Never deliver again; dead-letter with `reason` when one is given.
    case term(reason: String?)
}

/// The provider side of one delivery: sends a decision (ack, nak, in progress, term) to where
/// the delivery came from. Providers implement it; ``DeliveryHandle`` makes sure a delivery is
/// decided once.
public protocol DeliveryBackend: Sendable {
    /// The stream sequence of the delivery, for error messages.
    var sequence: UInt64 { get }
    /// Sends `action` to the provider. Called at most once with a finalising action (a second
    /// call happens only after the first one threw).
    func send(_ action: AckAction) async throws
}

/// Decides one delivery exactly once.
///
/// A delivery is finalised (`ack`, `nak`, `term`) exactly once: a second finalisation throws
/// ``CourierError/Code/alreadyFinalized`` without reaching the provider.
/// ``AckAction/inProgress`` may be sent any number of times before that. A decision the provider
/// could not send throws its error and leaves the delivery undecided, so it can be decided again
/// (or is redelivered after the ack wait).
public final class DeliveryHandle: Sendable {
    /// 0 while open, else the finalising action being sent or sent: 1 ack, 2 nak, 3 term.
    private let finalized = Atomic<UInt8>(0)
    private let backend: any DeliveryBackend

    /// A handle deciding the delivery `backend` sends decisions for.
    public init(_ backend: any DeliveryBackend) {
        self.backend = backend
    }

    /// The stream sequence of the delivery.
    public var sequence: UInt64 { backend.sequence }

    /// Whether the delivery was already finalised.
    public var isFinalized: Bool { finalized.load(ordering: .acquiring) != 0 }

    private var finalActionName: String {
        switch finalized.load(ordering: .acquiring) {
        case 1: "ack"
        case 2: "nak"
        default: "term"
        }
    }

    /// Sends `action`, enforcing exactly-once finalisation.
    public func finalize(_ action: AckAction) async throws {
        let code: UInt8
        switch action {
        case .inProgress:
            guard !isFinalized else { throw CourierError.alreadyFinalized(sequence: sequence, by: finalActionName) }
            try await backend.send(action)
            return
        case .ack, .doubleAck: code = 1
        case .nak: code = 2
        case .term: code = 3
        }
        guard finalized.compareExchange(expected: 0, desired: code, ordering: .acquiringAndReleasing).exchanged else {
            throw CourierError.alreadyFinalized(sequence: sequence, by: finalActionName)
        }
        do {
            try await backend.send(action)
        } catch {
            finalized.store(0, ordering: .releasing)  // not recorded: the delivery is still undecided
            throw error
        }
    }
}

/// A delivery awaiting a manual decision: exactly one of ``ack()``, ``nak(delay:)`` or
/// ``term(reason:)``, with any number of ``inProgress()`` calls before it.
///
/// An undecided delivery is redelivered once the consumer's ack wait expires; after
/// `maxDeliver` attempts it is dead-lettered.
public struct PendingEvent: Sendable {
    /// The delivered event with its sequence and delivery count.
    public let received: ReceivedEvent
    private let handle: DeliveryHandle

    /// Creates a pending delivery whose decisions `backend` sends.
    public init(received: ReceivedEvent, backend: any DeliveryBackend) {
        self.init(received: received, handle: DeliveryHandle(backend))
    }

    init(received: ReceivedEvent, handle: DeliveryHandle) {
        self.received = received
        self.handle = handle
    }

    /// The event.
    public var event: Event { received.event }
    /// Its stream sequence.
    public var sequence: UInt64 { received.sequence }
    /// How many times it has been delivered, 1 for the first delivery.
    public var deliveryCount: Int { received.deliveryCount }
    /// Whether a decision was already sent.
    public var isFinalized: Bool { handle.isFinalized }

    /// Marks the event processed.
    ///
    /// - Throws: the provider's error when the acknowledgement could not be sent (the delivery
    ///   then stays undecided and is redelivered after the ack wait).
    public func ack() async throws { try await handle.finalize(.ack) }
    /// Marks the event processed and returns only once the provider confirmed it recorded the
    /// acknowledgement (JetStream's "double ack", as in nats.go and async-nats), for
    /// effectively-once processing: after it returns, the event is not redelivered.
    ///
    /// - Throws: ``CourierError/Code/timeout`` (retryable) when no confirmation came in time;
    ///   the delivery then stays undecided.
    public func doubleAck() async throws { try await handle.finalize(.doubleAck) }
    /// Asks for redelivery, after `delay` or at once when `nil`. Once the consumer's `maxDeliver`
    /// is reached the event is dead-lettered instead.
    public func nak(delay: Duration? = nil) async throws { try await handle.finalize(.nak(delay: delay)) }
    /// Restarts the ack-wait timer for a long-running handler.
    public func inProgress() async throws { try await handle.finalize(.inProgress) }
    /// Stops delivery for good. With a reason, the event is dead-lettered with it.
    public func term(reason: String? = nil) async throws { try await handle.finalize(.term(reason: reason)) }

    /// A copy delivering `event` whose decision also ends `span`.
    func tracing(_ span: any Span, event: Event) -> PendingEvent {
        var received = self.received
        received.event = event
        return PendingEvent(received: received, backend: TracedDelivery(base: handle, span: span))
    }

    /// A copy delivering a different event (after decryption, for example) with the same handle.
    public func replacingEvent(_ event: Event) -> PendingEvent {
        var received = self.received
        received.event = event
        return PendingEvent(received: received, handle: handle)
    }
}
