#if NATS
import CourierCore
import Logging
import Synchronization

/// A push-consumer subscription: the source behind an `EventSubscription` from the JetStream
/// provider.
///
/// Deliveries arrive through ``DeliveryInbox``. Acknowledgements are published directly to each
/// message's reply subject on the provider's connection, so they never touch a `natsMsg` or the
/// `natsSubscription` after delivery (cnats 3.4.1 dereferences the subscription inside
/// `natsMsg_Ack`, which would crash once it is destroyed).
final class JetStreamSubscription: EventSubscriptionSource {
    let connection: NATSConnection
    let inbox: DeliveryInbox
    let handle: SubscriptionHandle
    let consumer: String
    let durable: Bool
    let options: SubscribeOptions
    let deadLetters: any DlqHandler
    let prefix: String
    let stream: String
    let logger: Logger
    /// How long a confirmed acknowledgement waits for the server.
    let requestTimeout: Duration
    private let onClose: @Sendable (JetStreamSubscription) -> Void

    init(
        connection: NATSConnection,
        inbox: DeliveryInbox,
        handle: SubscriptionHandle,
        consumer: String,
        durable: Bool,
        options: SubscribeOptions,
        deadLetters: any DlqHandler,
        prefix: String,
        stream: String,
        logger: Logger,
        requestTimeout: Duration,
        onClose: @escaping @Sendable (JetStreamSubscription) -> Void
    ) {
        self.connection = connection
        self.inbox = inbox
        self.handle = handle
        self.consumer = consumer
        self.durable = durable
        self.options = options
        self.deadLetters = deadLetters
        self.prefix = prefix
        self.stream = stream
        self.logger = logger
        self.requestTimeout = requestTimeout
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
            let maxDeliver = options.maxDeliver
            if count > maxDeliver {
                // Past the budget: the last attempt expired, or an earlier hand-off failed and the
                // server brought the event back to try again.
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
            let backend = JetStreamDelivery(subscription: self, delivery: delivery) { [self] reason, attempts in
                letter(for: event, delivery, attempts: attempts, reason: reason)
            }
            return PendingEvent(received: received, backend: backend)
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
            let maxDeliver = options.maxDeliver
            if count > maxDeliver {
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
                handle: DeliveryHandle(JetStreamDelivery(subscription: self, delivery: delivery, letter: rawLetter))
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
    /// fails, the delivery is nak'ed with ``SubscribeOptions/deadLetterHandOffDelay(afterFailures:)``
    /// instead, so the server brings it back to try again (up to the consumer's server-side
    /// bound, ``SubscribeOptions/deliveryLimit``); it is never terminated unless a store took it.
    func deadLetterAndTerm(_ delivery: IncomingDelivery, _ letter: DeadLetterEvent) async {
        do {
            try await deadLetters.handle(letter)
            try await sendAcknowledgement { try self.connection.acknowledge(delivery.message, "+TERM") }
        } catch {
            // Deliveries past `maxDeliver` are hand-off retries.
            let failures = max(1, delivery.metadata.deliveryCount - options.maxDeliver + 1)
            let delay = SubscribeOptions.deadLetterHandOffDelay(afterFailures: failures)
            let last = delivery.metadata.deliveryCount >= options.deliveryLimit
            logger.error(
                last
                    ? "dead-letter hand-off failed on the last delivery the consumer allows; the event stays in the stream"
                    : "dead-letter hand-off failed; the event stays in the stream and the hand-off is retried",
                metadata: [
                    "subject": "\(letter.originalSubject)", "sequence": "\(delivery.metadata.streamSequence)",
                    "attempt": "\(failures)/\(SubscribeOptions.deadLetterHandOffAttempts)", "retryIn": "\(delay)",
                    "error": "\(error)",
                ]
            )
            try? await sendAcknowledgement {
                try self.connection.acknowledge(delivery.message, bytes: nakBody(delay: delay))
            }
        }
    }

    /// Sends an acknowledgement. While the connection is down (the send fails retryably: cnats
    /// keeps no reconnect buffer for Courier) it waits for the connection to come back, at most
    /// the request timeout, then throws the last error.
    func sendAcknowledgement(_ send: () throws -> Void) async throws {
        let deadline = ContinuousClock.now + requestTimeout
        while true {
            do {
                return try send()
            } catch let error as CourierError where error.isRetryable && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
        }
    }

    /// Closes the subscription: the inbox's state machine moves to closed (waiters get `nil`)
    /// and, on the first close, the cnats subscription is drained. Once the drain completes,
    /// the inbox hands back what was pushed but never taken, so another subscriber of the
    /// consumer gets it at once instead of after its ack wait.
    func close() async {
        guard inbox.close() else { return }
        handle.drain()
        onClose(self)
    }

    var isClosed: Bool { inbox.isClosed }

    deinit {
        if inbox.close() { handle.drain() }
    }
}

/// `-NAK {"delay": <nanoseconds>}`.
func nakBody(delay: Duration) -> [UInt8] {
    Array("-NAK {\"delay\": \(max(0, delay.nanoseconds))}".utf8)
}

/// One JetStream delivery awaiting a decision.
struct JetStreamDelivery: DeliveryBackend {
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
    }

    var sequence: UInt64 { delivery.metadata.streamSequence }

    func send(_ action: AckAction) async throws {
        let connection = subscription.connection
        let message = delivery.message
        let count = delivery.metadata.deliveryCount
        switch action {
        case .ack:
            try await subscription.sendAcknowledgement { try connection.acknowledge(message, "+ACK") }
        case .doubleAck:
            let timeout = subscription.requestTimeout
            try await Blocking.run { try connection.acknowledgeConfirmed(message, timeout: timeout) }
        case .inProgress:
            try await subscription.sendAcknowledgement { try connection.acknowledge(message, "+WPI") }
        case .nak(let delay):
            let maxDeliver = subscription.options.maxDeliver
            if count >= maxDeliver {
                await subscription.deadLetterAndTerm(
                    delivery, letter("nak'ed on its final delivery (maximum deliveries \(maxDeliver) exhausted)", count)
                )
            } else if let delay, delay > .zero {
                try await subscription.sendAcknowledgement {
                    try connection.acknowledge(message, bytes: nakBody(delay: delay))
                }
            } else {
                try await subscription.sendAcknowledgement { try connection.acknowledge(message, "-NAK") }
            }
        case .term(let reason):
            if let reason {
                await subscription.deadLetterAndTerm(delivery, letter("terminated: \(reason)", count))
            } else {
                try await subscription.sendAcknowledgement { try connection.acknowledge(message, "+TERM") }
            }
        }
    }
}
#endif
