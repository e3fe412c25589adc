#if NATS
internal import CNATS
import CourierCore
import Logging
import Synchronization

/// Owns one `natsSubscription` handle. The subscription's ``DeliveryInbox`` keeps it alive until
/// cnats reports the subscription complete, so it is never destroyed while a drain is running
/// (destroying a draining subscription drops the messages still queued for it).
final class SubscriptionHandle: @unchecked Sendable {
    let subscription: OpaquePointer
    private let draining = Atomic<Bool>(false)

    init(_ subscription: OpaquePointer) {
        self.subscription = subscription
    }

    /// Stops interest and lets cnats deliver what is already queued, then completes (and, for a
    /// subscription that owns an ephemeral consumer, deletes it). Non-blocking; idempotent.
    func drain() {
        guard draining.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
        else {
            return
        }
        if natsSubscription_Drain(subscription) != NATS_OK {
            _ = natsSubscription_Unsubscribe(subscription)
        }
    }

    deinit {
        natsSubscription_Destroy(subscription)
    }
}

/// A push-consumer subscription: the source behind an `EventSubscription` from the JetStream
/// provider.
///
/// Deliveries arrive through ``DeliveryInbox``. Acknowledgements are published directly to each
/// message's reply subject on the provider's connection, so they never touch a `natsMsg` or the
/// `natsSubscription` after delivery (cnats 3.4.1 dereferences the subscription inside
/// `natsMsg_Ack`, which would crash once it is destroyed).
final class JetStreamSubscription: EventSubscriptionSource, @unchecked Sendable {
    let connection: NATSConnection
    let inbox: DeliveryInbox
    let handle: SubscriptionHandle
    let consumer: String
    let durable: Bool
    let maxDeliver: Int?
    let deadLetters: any DlqHandler
    let prefix: String
    let stream: String
    let logger: Logger
    private let closed = Atomic<Bool>(false)
    private let onClose: @Sendable (JetStreamSubscription) -> Void

    init(
        connection: NATSConnection,
        inbox: DeliveryInbox,
        handle: SubscriptionHandle,
        consumer: String,
        durable: Bool,
        maxDeliver: Int?,
        deadLetters: any DlqHandler,
        prefix: String,
        stream: String,
        logger: Logger,
        onClose: @escaping @Sendable (JetStreamSubscription) -> Void
    ) {
        self.connection = connection
        self.inbox = inbox
        self.handle = handle
        self.consumer = consumer
        self.durable = durable
        self.maxDeliver = maxDeliver
        self.deadLetters = deadLetters
        self.prefix = prefix
        self.stream = stream
        self.logger = logger
        self.onClose = onClose
    }

    func next() async throws -> PendingEvent? {
        while let delivery = await inbox.take() {
            let count = delivery.metadata.deliveryCount
            let event: Event
            do {
                event = try delivery.message.withData { try Event(wireJSON: $0) }
            } catch {
                let message = delivery.message
                await deadLetterAndTerm(
                    delivery,
                    DeadLetterEvent.undecodable(
                        subject: message.subject ?? "",
                        raw: message.data,
                        reason: "undecodable payload: \((error as? CourierError)?.message ?? "\(error)")",
                        attempts: count,
                        consumer: durable ? consumer : nil,
                        streamSequence: delivery.metadata.streamSequence,
                        messageID: message.headers["nats-msg-id"],
                        prefix: prefix
                    )
                )
                continue
            }
            if let maxDeliver, count > maxDeliver {
                // The server redelivered past the budget (the last attempt expired): dead-letter it.
                await deadLetterAndTerm(
                    delivery,
                    letter(
                        for: event, delivery, attempts: maxDeliver,
                        reason: "maximum deliveries (\(maxDeliver)) exhausted")
                )
                continue
            }
            let received = ReceivedEvent(
                event: event,
                sequence: delivery.metadata.streamSequence,
                deliveryCount: count,
                stream: stream
            )
            let handle = JetStreamDelivery(subscription: self, delivery: delivery) { [self] reason, attempts in
                letter(for: event, delivery, attempts: attempts, reason: reason)
            }
            return PendingEvent(received: received, handle: handle)
        }
        return nil
    }

    /// The next delivery as a raw message with its headers (no event decoding).
    func nextMessage() async -> PendingMessage? {
        while let delivery = await inbox.take() {
            let count = delivery.metadata.deliveryCount
            let rawLetter: @Sendable (String, Int) -> DeadLetterEvent = { [self] reason, attempts in
                DeadLetterEvent.undecodable(
                    subject: delivery.message.subject ?? "",
                    raw: delivery.message.data,
                    reason: reason,
                    attempts: attempts,
                    consumer: durable ? consumer : nil,
                    streamSequence: delivery.metadata.streamSequence,
                    messageID: delivery.message.headers["nats-msg-id"],
                    prefix: prefix
                )
            }
            if let maxDeliver, count > maxDeliver {
                await deadLetterAndTerm(delivery, rawLetter("maximum deliveries (\(maxDeliver)) exhausted", maxDeliver))
                continue
            }
            return PendingMessage(
                subject: delivery.message.subject ?? "",
                headers: delivery.message.headers,
                payload: delivery.message.data,
                sequence: delivery.metadata.streamSequence,
                deliveryCount: count,
                stream: stream,
                handle: JetStreamDelivery(subscription: self, delivery: delivery, letter: rawLetter)
            )
        }
        return nil
    }

    func letter(for event: Event, _ delivery: IncomingDelivery, attempts: Int, reason: String) -> DeadLetterEvent {
        DeadLetterEvent(
            event: event,
            reason: reason,
            attempts: attempts,
            consumer: durable ? consumer : nil,
            streamSequence: delivery.metadata.streamSequence,
            firstFailureAt: nil
        )
    }

    /// Hands `letter` to the dead-letter handler, then terminates the delivery. If the handler
    /// fails, the delivery is nak'ed with a delay instead, so the hand-off is retried later.
    func deadLetterAndTerm(_ delivery: IncomingDelivery, _ letter: DeadLetterEvent) async {
        do {
            try await deadLetters.handle(letter)
            try connection.acknowledge(delivery.message, "+TERM")
        } catch {
            logger.error(
                "dead-letter hand-off failed; the message stays in the stream and is retried",
                metadata: [
                    "subject": "\(letter.originalSubject)", "sequence": "\(delivery.metadata.streamSequence)",
                    "error": "\(error)",
                ]
            )
            try? connection.acknowledge(delivery.message, bytes: nakBody(delay: .seconds(5)))
        }
    }

    func close() async {
        guard closed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
            return
        }
        // Stop the server pushing to this subscription; once the drain completes, the inbox hands
        // back what was pushed but never taken, so another subscriber of the consumer gets it at
        // once instead of after its ack wait.
        handle.drain()
        inbox.close()
        onClose(self)
    }

    var isClosed: Bool { closed.load(ordering: .acquiring) }

    deinit {
        if !closed.load(ordering: .acquiring) {
            handle.drain()
            inbox.close()
        }
    }
}

/// `-NAK {"delay": <nanoseconds>}`.
func nakBody(delay: Duration) -> [UInt8] {
    Array("-NAK {\"delay\": \(max(0, delay.nanoseconds))}".utf8)
}

/// One JetStream delivery awaiting a decision.
final class JetStreamDelivery: DeliveryHandle, @unchecked Sendable {
    let subscription: JetStreamSubscription
    let delivery: IncomingDelivery
    /// The dead letter for this delivery, given the reason and the attempts made.
    let letter: @Sendable (_ reason: String, _ attempts: Int) -> DeadLetterEvent

    init(
        subscription: JetStreamSubscription,
        delivery: IncomingDelivery,
        letter: @escaping @Sendable (_ reason: String, _ attempts: Int) -> DeadLetterEvent
    ) {
        self.subscription = subscription
        self.delivery = delivery
        self.letter = letter
        super.init(sequence: delivery.metadata.streamSequence)
    }

    override func perform(_ action: AckAction) async throws {
        let connection = subscription.connection
        let message = delivery.message
        let count = delivery.metadata.deliveryCount
        switch action {
        case .ack:
            try connection.acknowledge(message, "+ACK")
        case .inProgress:
            try connection.acknowledge(message, "+WPI")
        case .nak(let delay):
            if let maxDeliver = subscription.maxDeliver, count >= maxDeliver {
                await subscription.deadLetterAndTerm(
                    delivery, letter("nak'ed on its final delivery (maximum deliveries \(maxDeliver) exhausted)", count)
                )
            } else if let delay, delay > .zero {
                try connection.acknowledge(message, bytes: nakBody(delay: delay))
            } else {
                try connection.acknowledge(message, "-NAK")
            }
        case .term(let reason):
            if let reason {
                await subscription.deadLetterAndTerm(delivery, letter("terminated: \(reason)", count))
            } else {
                try connection.acknowledge(message, "+TERM")
            }
        }
    }
}
#endif
