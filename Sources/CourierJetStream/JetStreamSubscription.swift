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
    /// The cnats subscription feeding the inbox (replaced when a stalled one is resubscribed).
    private let handle: Mutex<SubscriptionHandle>
    private let stallWatch = Mutex<Task<Void, Never>?>(nil)
    /// Stream sequences this subscription dead-lettered lately.
    private let deadLettered = Mutex(RecentSequences(capacity: 1024))
    /// Stream sequences this subscription terminated (`+TERM` sent), so a redelivery of one
    /// (its `+TERM` reached the server after the ack wait) is terminated again, never shown.
    private let terminated = Mutex(RecentSequences(capacity: 1024))
    /// Stream sequences whose acknowledgement the server confirmed (double ack), so a
    /// redelivery it had sent before the ack arrived is acknowledged again, never shown.
    private let confirmed = Mutex(RecentSequences(capacity: 1024))
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
        self.handle = Mutex(handle)
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
            if count > 1, await settledAgain(delivery) { continue }
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
            return PendingEvent(
                received: received, backend: JetStreamDelivery(subscription: self, delivery: delivery, event: event))
        }
        return nil
    }

    /// The next delivery as a raw message with its headers (no event decoding).
    func nextMessage() async -> PendingMessage? {
        while let delivery = await inbox.take() {
            let count = delivery.metadata.deliveryCount
            if count > 1, await settledAgain(delivery) { continue }
            let maxDeliver = options.maxDeliver
            if count > maxDeliver {
                await deadLetterAndTerm(
                    delivery,
                    rawLetter(delivery, attempts: maxDeliver, reason: "maximum deliveries (\(maxDeliver)) exhausted"))
                continue
            }
            return PendingMessage(
                subject: delivery.message.subject ?? "",
                headers: delivery.message.headers,
                payload: delivery.message.data,
                sequence: delivery.metadata.streamSequence,
                deliveryCount: count,
                stream: stream,
                handle: DeliveryHandle(JetStreamDelivery(subscription: self, delivery: delivery, event: nil))
            )
        }
        return nil
    }

    /// The dead letter for a delivery that is not (or was not decoded as) an event: its raw bytes.
    func rawLetter(_ delivery: IncomingDelivery, attempts: Int, reason: String) -> DeadLetterEvent {
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
    ///
    /// A redelivery of an event this subscription already dead-lettered (its `+TERM` reached the
    /// server after the ack wait, on a loaded machine) is only terminated again: the handler
    /// sees each poison event once.
    func deadLetterAndTerm(_ delivery: IncomingDelivery, _ letter: DeadLetterEvent) async {
        let sequence = delivery.metadata.streamSequence
        do {
            if !deadLettered.withLock({ $0.contains(sequence) }) {
                try await deadLetters.handle(letter)
                deadLettered.withLock { $0.insert(sequence) }
            }
            try await terminate(delivery)
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

    /// Terminates `delivery` (`+TERM`) and remembers its sequence.
    func terminate(_ delivery: IncomingDelivery) async throws {
        try await sendAcknowledgement { try self.connection.acknowledge(delivery.message, "+TERM") }
        terminated.withLock { $0.insert(delivery.metadata.streamSequence) }
    }

    /// Records that the server confirmed the acknowledgement of `sequence` (a double ack).
    func confirmedAcknowledgement(of sequence: UInt64) {
        confirmed.withLock { $0.insert(sequence) }
    }

    /// Whether `delivery` is a redelivery of an event this subscription already terminated, or
    /// acknowledged with the server's confirmation: on a loaded machine the `+TERM` or `+ACK`
    /// can reach the server after the ack wait, and the server sends the event again. It is
    /// then terminated or acknowledged again instead of shown.
    private func settledAgain(_ delivery: IncomingDelivery) async -> Bool {
        let sequence = delivery.metadata.streamSequence
        let reply: StaticString
        if terminated.withLock({ $0.contains(sequence) }) {
            reply = "+TERM"
        } else if confirmed.withLock({ $0.contains(sequence) }) {
            reply = "+ACK"
        } else {
            return false
        }
        logger.notice(
            "an event this subscription settled came back (its \(reply) reached the server after the ack wait); settled again",
            metadata: ["sequence": "\(sequence)", "deliveries": "\(delivery.metadata.deliveryCount)"])
        try? await sendAcknowledgement { try self.connection.acknowledge(delivery.message, reply) }
        return true
    }

    /// Sends an acknowledgement. While the connection is down (the send fails retryably: cnats
    /// keeps no reconnect buffer for Courier) it waits for the connection to come back, at most
    /// the request timeout, then throws the last error.
    func sendAcknowledgement(_ send: () throws -> Void) async throws {
        // Only a failed send reads the clock: the first attempt nearly always succeeds.
        var deadline: ContinuousClock.Instant?
        while true {
            do {
                return try send()
            } catch let error as CourierError where error.isRetryable {
                let now = ContinuousClock.now
                let limit = deadline ?? now + requestTimeout
                guard now < limit else { throw error }
                deadline = limit
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
        stallWatch.withLock { $0?.cancel() }
        handle.withLock { $0 }.drain()
        onClose(self)
    }

    var isClosed: Bool { inbox.isClosed }

    deinit {
        stallWatch.withLock { $0?.cancel() }
        if inbox.close() { handle.withLock { $0 }.drain() }
    }

    // MARK: Stalls

    /// Watches a durable push subscription for a stall: nothing arrived for `quiet` while the
    /// server reports events pending that it could deliver (fewer than `MaxAckPending` awaiting
    /// acks) and its delivered sequence did not move since the last look, or it sees no
    /// subscription at all. Then the consumer is subscribed again and the old subscription
    /// drained. (Seen on nats-server 2.9 after leader changes: a queue subscription's interest
    /// lost between nodes, so the consumer stops pushing with thousands of events pending.)
    ///
    /// `stalled` is called after each recovery, for the provider's counters.
    func watchForStalls(
        every interval: Duration,
        after quiet: Duration,
        progress: @escaping @Sendable () async throws -> ConsumerProgress,
        resubscribe: @escaping @Sendable () async throws -> SubscriptionHandle,
        stalled: @escaping @Sendable () -> Void
    ) {
        let inbox = self.inbox
        let task = Task { [weak self] in
            var seen = inbox.received
            var quietSince = ContinuousClock.now
            var lastDelivered: UInt64?
            while !Task.isCancelled, !inbox.isClosed {
                try? await Task.sleep(for: interval)
                let received = inbox.received
                if received != seen {
                    seen = received
                    quietSince = .now
                    lastDelivered = nil
                    continue
                }
                guard ContinuousClock.now - quietSince >= quiet, !Task.isCancelled,
                    let now = try? await progress()
                else { continue }
                let couldDeliver = now.pending > 0 && (now.maxAckPending <= 0 || now.ackPending < now.maxAckPending)
                let stuck = couldDeliver && (!now.pushBound || lastDelivered == now.delivered)
                lastDelivered = now.delivered
                guard stuck, let self else { continue }
                self.logger.warning(
                    "durable consumer stalled: events pending on the server, none delivered; subscribing again",
                    metadata: [
                        "consumer": "\(self.consumer)", "pending": "\(now.pending)", "ackPending": "\(now.ackPending)",
                        "pushBound": "\(now.pushBound)", "quietFor": "\(ContinuousClock.now - quietSince)",
                    ])
                do {
                    try await self.replaceSubscription(with: resubscribe())
                    stalled()
                    quietSince = .now
                    lastDelivered = nil
                } catch {
                    self.logger.error(
                        "subscribing a stalled consumer again failed; trying again later",
                        metadata: ["consumer": "\(self.consumer)", "error": "\(error)"])
                }
            }
        }
        stallWatch.withLock { $0 = task }
    }

    /// Drops the subscription's interest on the server, as a stall does, without ending the
    /// subscription: its cnats subscription is drained as if it had been replaced. For tests of
    /// the stall watch.
    func dropInterest() {
        inbox.detachCurrent()
        handle.withLock { $0 }.drain()
    }

    /// Makes `fresh` the subscription feeding the inbox and drains the one it replaces.
    func replaceSubscription(with fresh: SubscriptionHandle) {
        let old = handle.withLock { current -> SubscriptionHandle in
            defer { current = fresh }
            return current
        }
        // Closed meanwhile: `close()` may have drained the old one only.
        if isClosed { fresh.drain() }
        old.drain()
    }
}

/// The last `capacity` sequences inserted, for membership tests.
struct RecentSequences: Sendable {
    let capacity: Int
    private var members: Set<UInt64> = []
    private var order: [UInt64] = []
    private var next = 0

    init(capacity: Int) {
        self.capacity = capacity
    }

    func contains(_ sequence: UInt64) -> Bool { members.contains(sequence) }

    mutating func insert(_ sequence: UInt64) {
        guard members.insert(sequence).inserted else { return }
        if order.count < capacity {
            order.append(sequence)
        } else {
            members.remove(order[next])
            order[next] = sequence
            next = (next + 1) % capacity
        }
    }
}

/// `-NAK {"delay": <nanoseconds>}`.
func nakBody(delay: Duration) -> [UInt8] {
    Array("-NAK {\"delay\": \(max(0, delay.nanoseconds))}".utf8)
}

/// One JetStream delivery awaiting a decision. A class, so the handle holds it without boxing
/// (the delivery's message and metadata are larger than an existential's inline buffer).
final class JetStreamDelivery: DeliveryBackend {
    let subscription: JetStreamSubscription
    let delivery: IncomingDelivery
    /// The decoded event, for dead letters; `nil` for raw message deliveries.
    let event: Event?

    init(subscription: JetStreamSubscription, delivery: IncomingDelivery, event: Event?) {
        self.subscription = subscription
        self.delivery = delivery
        self.event = event
    }

    /// The dead letter for this delivery, given the reason and the attempts made.
    func letter(_ reason: String, _ attempts: Int) -> DeadLetterEvent {
        if let event { return subscription.letter(for: event, delivery, attempts: attempts, reason: reason) }
        return subscription.rawLetter(delivery, attempts: attempts, reason: reason)
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
            subscription.confirmedAcknowledgement(of: delivery.metadata.streamSequence)
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
                try await subscription.terminate(delivery)
            }
        }
    }
}
#endif
