import CNATSBaseline
import Courier
import Dispatch

/// Where durable consume + ack's cost goes, step by step, each step against the jetstream
/// suite's baseline (a cnats push subscription acking in its callback, max ack pending 1 000):
///
/// 1. a synchronous cnats subscription read by a task on Swift's pool, each message's reply
///    subject parsed and acknowledged in the loop: no decoding, no `PendingEvent`;
/// 2. the same, each message handed out as a `PendingEvent` and acknowledged with
///    `await pending.ack()` (the payload not decoded: every step hands out one fixed event);
/// 3. the same as 1, with each body decoded by `Event(wireJSON:)`;
/// 4. both: what `subscribeDurable` does, read from a synchronous subscription;
/// 5. `subscribeDurable` as it is (cnats' delivery thread hands messages to the task).
///
/// Memory storage, 100 000 events of the jetstream suite's wire form.
func consumeAnatomyPairs(url: String) -> [Pair] {
    let count = 100_000
    let stream = "BENCH_ANATOMY"
    let prefix = "benchanatomy"
    let wire = Event(
        subject: "\(prefix).market.fx", category: "market",
        payload: ["data": .string(String(repeating: "x", count: 118))]
    ).wireJSON()
    func prefill() { prefillWithC(url: url, stream: stream, prefix: prefix, file: 0, wire: wire, count: count) }
    /// Steps 1 to 4: `decodes` and `pending` say what is added to the loop.
    func step(decodes: Bool, pending: Bool) -> () async throws -> Double {
        {
            prefill()
            guard let handle = cb_sync_open(url, stream, "anatomy", "\(prefix).>", 1000) else {
                preconditionFailure("cannot subscribe")
            }
            let consumer = SyncConsumer(handle: handle, stream: stream, decodes: decodes)
            defer { cb_sync_close(handle) }
            return try await Task.detached {
                try await timed(count) {
                    for _ in 0..<count {
                        if pending {
                            try await consumer.nextPending().ack()
                        } else {
                            await consumer.nextAcknowledged()
                        }
                    }
                }
            }.value
        }
    }
    let courier: () async throws -> Double = {
        prefill()
        var configuration = JetStreamProvider.Configuration(url: url)
        configuration.stream = stream
        configuration.subjectPrefix = prefix
        configuration.storage = .memory
        let provider = try await JetStreamProvider.connect(configuration)
        let subscription = try await provider.subscribeDurable(
            consumer: "courier", filter: "\(prefix).>", options: SubscribeOptions(maxAckPending: 1000))
        let result = try await timedConsumeAndAck(subscription, count: count)
        await subscription.close()
        await provider.shutdown()
        return result
    }
    let steps: [(name: String, courier: String, target: Double?, measure: () async throws -> Double)] = [
        (
            "1: sync subscription, ack in the loop", "no decoding, no PendingEvent", nil,
            step(decodes: false, pending: false)
        ),
        ("2: + PendingEvent and await ack()", "no decoding", nil, step(decodes: false, pending: true)),
        (
            "3: + Event(wireJSON:), ack in the loop", "decoding, no PendingEvent", nil,
            step(decodes: true, pending: false)
        ),
        ("4: + both", "decoding and PendingEvent", nil, step(decodes: true, pending: true)),
        ("5: subscribeDurable", "subscribeDurable, manual ack", 0.9, courier),
    ]
    return steps.map { step in
        Pair(
            name: "consume anatomy \(step.name)",
            baseline: "cnats push subscription + natsMsg_Ack in the callback",
            courier: step.courier,
            target: step.target,
            measureBaseline: {
                prefill()
                return cPushAckRate(url: url, stream: stream, prefix: prefix, count: count)
            },
            measureCourier: step.measure
        )
    }
}

/// Reads a synchronous cnats subscription from a task: what is queued without blocking, and
/// otherwise waits on a Dispatch thread, so the pool is never blocked.
///
/// `@unchecked Sendable`: one task at a time uses it (each step's loop), and the handle is only
/// read.
struct SyncConsumer: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer
    let stream: String
    let decodes: Bool
    /// What the steps without decoding hand out.
    static let fixedEvent = Event(subject: "benchanatomy.market.fx", category: "market")

    /// The next message, waiting for one.
    private func nextMessage() async -> UnsafeMutableRawPointer {
        if let message = cb_sync_next(handle, 0) { return message }
        let address = UInt(bitPattern: handle)
        while true {
            let message: UInt = await withCheckedContinuation { continuation in
                DispatchQueue.global().async {
                    let handle = UnsafeMutableRawPointer(bitPattern: address)
                    continuation.resume(returning: UInt(bitPattern: cb_sync_next(handle, 200)))
                }
            }
            if let message = UnsafeMutableRawPointer(bitPattern: message) { return message }
        }
    }

    /// The stream sequence in a `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.…` subject: as
    /// much work per message as Courier's parse of the five numbers.
    private static func streamSequence(_ reply: UnsafePointer<CChar>) -> UInt64 {
        var numbers: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0)
        var value: UInt64 = 0
        var i = 0
        while reply[i] != 0 {
            let byte = UInt8(bitPattern: reply[i])
            if byte == UInt8(ascii: ".") {
                numbers = (numbers.1, numbers.2, numbers.3, numbers.4, numbers.5, value)
                value = 0
            } else {
                value = value &* 10 &+ UInt64(byte &- 0x30)
            }
            i += 1
        }
        // After the last dot come the pending count; before it the timestamp, the consumer
        // sequence and the stream sequence.
        return numbers.3
    }

    /// The message's event: decoded from its body, or the fixed one.
    private func event(of message: UnsafeMutableRawPointer) -> Event {
        guard decodes else { return Self.fixedEvent }
        var length: Int32 = 0
        let data = cb_msg_data(message, &length)!
        let bytes = UnsafeBufferPointer(start: data.assumingMemoryBound(to: UInt8.self), count: Int(length))
        do {
            return try Event(wireJSON: bytes)
        } catch {
            preconditionFailure("undecodable event: \(error)")
        }
    }

    /// Steps 1 and 3: takes the next message, parses its reply subject, decodes it (step 3),
    /// acknowledges it and destroys it.
    func nextAcknowledged() async {
        let message = await nextMessage()
        let sequence = Self.streamSequence(cb_msg_reply(message))
        let event = event(of: message)
        precondition(sequence > 0 && !event.id.isEmpty)
        precondition(cb_sync_ack(handle, message) == 0, "ack failed")
        cb_msg_destroy(message)
    }

    /// Steps 2 and 4: the next message as a `PendingEvent`, whose `ack()` publishes `+ACK`.
    func nextPending() async -> PendingEvent {
        let message = await nextMessage()
        let sequence = Self.streamSequence(cb_msg_reply(message))
        let received = ReceivedEvent(event: event(of: message), sequence: sequence, deliveryCount: 1, stream: stream)
        return PendingEvent(
            received: received, backend: SyncDelivery(handle: handle, message: message, sequence: sequence))
    }
}

/// One delivery of a ``SyncConsumer``: acknowledging publishes `+ACK`; the message is destroyed
/// with the delivery, as Courier releases its own.
///
/// `@unchecked Sendable`: the pointers are only read, and the message is destroyed once, in
/// `deinit`.
final class SyncDelivery: DeliveryBackend, @unchecked Sendable {
    let handle: UnsafeMutableRawPointer
    let message: UnsafeMutableRawPointer
    let sequence: UInt64

    init(handle: UnsafeMutableRawPointer, message: UnsafeMutableRawPointer, sequence: UInt64) {
        self.handle = handle
        self.message = message
        self.sequence = sequence
    }

    func send(_ action: AckAction) async throws {
        precondition(action == .ack, "the anatomy rows only acknowledge")
        precondition(cb_sync_ack(handle, message) == 0, "ack failed")
    }

    deinit { cb_msg_destroy(message) }
}
