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

/// The provider side of one delivery. Providers subclass it and implement ``perform(_:)``.
///
/// The base class guarantees that a delivery is finalised (`ack`, `nak`, `term`) exactly once:
/// a second finalisation throws ``CourierError/Code/alreadyFinalized`` without reaching the
/// provider. ``AckAction/inProgress`` may be sent any number of times before that. A decision
/// the provider could not send throws its error and leaves the delivery undecided, so it can be
/// decided again (or is redelivered after the ack wait).
open class DeliveryHandle: @unchecked Sendable {
    /// 0 while open, else the finalising action being sent or sent: 1 ack, 2 nak, 3 term.
    private let finalized = Atomic<UInt8>(0)

    /// The stream sequence of the delivery, for error messages.
    public let sequence: UInt64

    /// Creates a handle for the delivery of stream sequence `sequence`.
    public init(sequence: UInt64) {
        self.sequence = sequence
    }

    /// Sends `action` to the provider. Called at most once with a finalising action.
    open func perform(_ action: AckAction) async throws {
        fatalError("DeliveryHandle.perform(_:) must be overridden")
    }

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
    public final func finalize(_ action: AckAction) async throws {
        let code: UInt8
        switch action {
        case .inProgress:
            guard !isFinalized else { throw CourierError.alreadyFinalized(sequence: sequence, by: finalActionName) }
            try await perform(action)
            return
        case .ack, .doubleAck: code = 1
        case .nak: code = 2
        case .term: code = 3
        }
        guard finalized.compareExchange(expected: 0, desired: code, ordering: .acquiringAndReleasing).exchanged else {
            throw CourierError.alreadyFinalized(sequence: sequence, by: finalActionName)
        }
        do {
            try await perform(action)
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

    /// Creates a pending delivery backed by a provider's handle.
    public init(received: ReceivedEvent, handle: DeliveryHandle) {
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
        return PendingEvent(received: received, handle: TracedDeliveryHandle(base: handle, span: span))
    }

    /// A copy delivering a different event (after decryption, for example) with the same handle.
    public func replacingEvent(_ event: Event) -> PendingEvent {
        var received = self.received
        received.event = event
        return PendingEvent(received: received, handle: handle)
    }
}
