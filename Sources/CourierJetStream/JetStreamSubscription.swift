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
        guard draining.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
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

/// A push-consumer subscription: the source behind an ``EventSubscription`` from the JetStream
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
        self.logger = logger
        self.onClose = onClose
    }

    func next() async throws -> PendingEvent? {
        while let delivery = await inbox.take() {
            let count = delivery.metadata.deliveryCount
            switch delivery.event {
            case .failure(let error):
                await deadLetterAndTerm(
                    delivery,
                    DeadLetterEvent.undecodable(
                        subject: delivery.subject,
                        raw: delivery.raw ?? [],
                        reason: "undecodable payload: \(error.message)",
                        attempts: count,
                        consumer: durable ? consumer : nil,
                        streamSequence: delivery.metadata.streamSequence,
                        messageID: delivery.messageID,
                        prefix: prefix
                    )
                )
            case .success(let event):
                if let maxDeliver, count > maxDeliver {
                    // The server redelivered past the budget (the last attempt expired): dead-letter it.
                    await deadLetterAndTerm(
                        delivery,
                        letter(for: event, delivery, attempts: maxDeliver, reason: "maximum deliveries (\(maxDeliver)) exhausted")
                    )
                    continue
                }
                let received = ReceivedEvent(
                    event: event,
                    sequence: delivery.metadata.streamSequence,
                    deliveryCount: count,
                    stream: delivery.metadata.stream
                )
                return PendingEvent(received: received, handle: JetStreamDelivery(subscription: self, delivery: delivery, received: received))
            }
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
            try connection.publishCore(subject: delivery.reply, body: "+TERM")
        } catch {
            logger.error(
                "dead-letter hand-off failed; the message stays in the stream and is retried",
                metadata: ["subject": "\(delivery.subject)", "sequence": "\(delivery.metadata.streamSequence)", "error": "\(error)"]
            )
            try? connection.publishCore(subject: delivery.reply, bytes: nakBody(delay: .seconds(5)))
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
    let received: ReceivedEvent

    init(subscription: JetStreamSubscription, delivery: IncomingDelivery, received: ReceivedEvent) {
        self.subscription = subscription
        self.delivery = delivery
        self.received = received
        super.init(sequence: received.sequence)
    }

    override func perform(_ action: AckAction) async throws {
        let connection = subscription.connection
        let reply = delivery.reply
        switch action {
        case .ack:
            try connection.publishCore(subject: reply, body: "+ACK")
        case .inProgress:
            try connection.publishCore(subject: reply, body: "+WPI")
        case .nak(let delay):
            if let maxDeliver = subscription.maxDeliver, received.deliveryCount >= maxDeliver {
                await subscription.deadLetterAndTerm(
                    delivery,
                    subscription.letter(
                        for: received.event,
                        delivery,
                        attempts: received.deliveryCount,
                        reason: "nak'ed on its final delivery (maximum deliveries \(maxDeliver) exhausted)"
                    )
                )
            } else if let delay, delay > .zero {
                try connection.publishCore(subject: reply, bytes: nakBody(delay: delay))
            } else {
                try connection.publishCore(subject: reply, body: "-NAK")
            }
        case .term(let reason):
            if let reason {
                await subscription.deadLetterAndTerm(
                    delivery,
                    subscription.letter(for: received.event, delivery, attempts: received.deliveryCount, reason: "terminated: \(reason)")
                )
            } else {
                try connection.publishCore(subject: reply, body: "+TERM")
            }
        }
    }
}
#endif
