#if NATS
internal import CNATS
import CourierCore
import DequeModule
import Synchronization

/// The JetStream delivery facts carried by a message's `$JS.ACK…` reply subject, parsed
/// without allocating: `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>`,
/// or the newer form with a domain and account hash after `ACK` (and an optional random suffix).
struct AckMetadata: Sendable, Hashable {
    var deliveryCount: Int
    var streamSequence: UInt64
    var consumerSequence: UInt64
    var timestamp: Int64
    var pending: UInt64

    init?(reply: UnsafePointer<CChar>) {
        let length = strlen(reply)
        guard
            let parsed = reply.withMemoryRebound(
                to: UInt8.self, capacity: length,
                {
                    AckMetadata(utf8: UnsafeBufferPointer(start: $0, count: length))
                })
        else { return nil }
        self = parsed
    }

    init?(utf8 bytes: UnsafeBufferPointer<UInt8>) {
        // Token boundaries: starts[i] is where token i begins.
        var starts: (Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int) = (
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        )
        var count = 1
        withUnsafeMutableBytes(of: &starts) { raw in
            let positions = raw.bindMemory(to: Int.self)
            for i in 0..<bytes.count where bytes[i] == UInt8(ascii: ".") {
                guard count < positions.count else { break }
                positions[count] = i + 1
                count += 1
            }
        }
        guard count == 9 || count == 11 || count == 12, bytes.count > 8,
            bytes[0] == UInt8(ascii: "$"), bytes[1] == UInt8(ascii: "J"), bytes[2] == UInt8(ascii: "S"),
            bytes[4] == UInt8(ascii: "A"), bytes[5] == UInt8(ascii: "C"), bytes[6] == UInt8(ascii: "K")
        else { return nil }
        let base = count == 9 ? 4 : 6
        let numbers: [UInt64]? = withUnsafeBytes(of: &starts) { raw -> [UInt64]? in
            let positions = raw.bindMemory(to: Int.self)
            var out: [UInt64] = []
            out.reserveCapacity(5)
            for token in base..<(base + 5) {
                let from = positions[token]
                let to = token + 1 < count ? positions[token + 1] - 1 : bytes.count
                guard from < to else { return nil }
                var value: UInt64 = 0
                for i in from..<to {
                    let digit = bytes[i] &- 0x30
                    guard digit < 10 else { return nil }
                    value = value &* 10 &+ UInt64(digit)
                }
                out.append(value)
            }
            return out
        }
        guard let numbers else { return nil }
        self.deliveryCount = Int(numbers[0])
        self.streamSequence = numbers[1]
        self.consumerSequence = numbers[2]
        self.timestamp = Int64(bitPattern: numbers[3])
        self.pending = numbers[4]
    }
}

/// One received message, copied out of its `natsMsg` on the cnats delivery thread (which then
/// destroys it): the reply subject and the body share one allocation.
///
/// Acknowledgements publish to the reply subject on the provider's connection; `natsMsg_Ack` is
/// never used, because cnats 3.4.1 dereferences the (possibly destroyed) subscription there.
struct NATSMessage: Sendable {
    /// `reply` NUL `body`.
    private let storage: [UInt8]
    private let replyLength: Int
    /// Headers (lowercased keys) when the subscription asked for them, or when the body does not
    /// look like JSON (so a dead letter can name its `Nats-Msg-Id`).
    let headers: [String: String]
    /// The subject, kept only alongside headers.
    let subject: String?

    init(_ msg: OpaquePointer, reply: UnsafePointer<CChar>, wantsHeaders: Bool) {
        let replyLength = strlen(reply)
        let bodyLength = Int(natsMsg_GetDataLength(msg))
        let body = natsMsg_GetData(msg)
        storage = [UInt8](unsafeUninitializedCapacity: replyLength + 1 + bodyLength) { buffer, count in
            let base = buffer.baseAddress!
            UnsafeMutableRawPointer(base).copyMemory(from: reply, byteCount: replyLength)
            base[replyLength] = 0
            if bodyLength > 0, let body {
                UnsafeMutableRawPointer(base + replyLength + 1).copyMemory(from: body, byteCount: bodyLength)
            }
            count = replyLength + 1 + bodyLength
        }
        self.replyLength = replyLength
        let looksLikeJSON = bodyLength > 0 && body.map { UInt8(bitPattern: $0[0]) == UInt8(ascii: "{") } == true
        if wantsHeaders || !looksLikeJSON {
            headers = lowercasedHeaders(of: msg)
            subject = String(cString: natsMsg_GetSubject(msg))
        } else {
            headers = [:]
            subject = nil
        }
    }

    /// Calls `body` with the NUL-terminated reply subject.
    func withReply<R>(_ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        try storage.withUnsafeBufferPointer { buffer in
            try UnsafeRawPointer(buffer.baseAddress!).withMemoryRebound(to: CChar.self, capacity: replyLength + 1) {
                try body($0)
            }
        }
    }

    /// The reply subject as text (for error messages).
    var replyText: String { String(decoding: storage[0..<replyLength], as: UTF8.self) }

    /// Calls `body` with the message body.
    func withData<R>(_ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        try storage.withUnsafeBufferPointer { try body(UnsafeBufferPointer(rebasing: $0[(replyLength + 1)...])) }
    }

    /// A copy of the body.
    var data: [UInt8] { Array(storage[(replyLength + 1)...]) }
}

/// One delivery as the cnats callback left it: the message and its JetStream metadata.
struct IncomingDelivery: Sendable {
    let message: NATSMessage
    let metadata: AckMetadata
}

/// Reads every header of `msg` into a dictionary with lowercased keys. Empty when there are none.
func lowercasedHeaders(of msg: OpaquePointer) -> [String: String] {
    var keys: UnsafeMutablePointer<UnsafePointer<CChar>?>?
    var count: Int32 = 0
    guard natsMsgHeader_Keys(msg, &keys, &count) == NATS_OK, let keys else { return [:] }
    defer { free(keys) }
    var headers: [String: String] = [:]
    for i in 0..<Int(count) {
        guard let key = keys[i] else { continue }
        var value: UnsafePointer<CChar>?
        guard natsMsgHeader_Get(msg, key, &value) == NATS_OK, let value else { continue }
        headers[String(cString: key).lowercased()] = String(cString: value)
    }
    return headers
}

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

/// Where a push subscription's callback leaves messages for `next()` to take. It is the closure
/// cnats passes to the message handler: retained at subscribe time and released by the
/// subscription's on-complete callback, after the last handler call has returned.
final class DeliveryInbox: Sendable {
    private struct State {
        var buffer: Deque<IncomingDelivery> = []
        var waiters: Deque<(id: UInt64, continuation: CheckedContinuation<IncomingDelivery?, Never>)> = []
        var closed = false
        var nextWaiter: UInt64 = 0
        /// Deliveries nobody took, handed back once the subscription completes.
        var handBack: [NATSMessage] = []
    }

    private let state = Mutex(State())
    /// The subscription handle, kept alive by the inbox until cnats completes the subscription.
    private let handle = Mutex<SubscriptionHandle?>(nil)
    /// Hands one delivery back (nak) so another subscriber gets it now rather than after the ack
    /// wait. Called only once the subscription is complete: earlier, the server could route the
    /// redelivery straight back to this draining subscription.
    private let handBack: @Sendable (NATSMessage) -> Void
    /// Whether every delivery's headers are read (CloudEvents binary mode, trace context).
    let wantsHeaders: Bool

    init(wantsHeaders: Bool = false, handBack: @escaping @Sendable (NATSMessage) -> Void) {
        self.wantsHeaders = wantsHeaders
        self.handBack = handBack
    }

    /// Called on the subscription's cnats delivery thread. It does as little as possible (parse
    /// the reply subject, queue the message): decoding happens in the consumer's task, so the
    /// delivery thread keeps up with the server and the work spreads over both threads.
    ///
    /// A waiting consumer is woken only once cnats has no further message queued for this
    /// subscription (or enough are buffered): during a burst the consumer then takes many
    /// deliveries per wake-up instead of paying a thread switch for each one.
    func receive(_ msg: OpaquePointer, subscription: OpaquePointer?) {
        defer { natsMsg_Destroy(msg) }
        guard let reply = natsMsg_GetReply(msg), let metadata = AckMetadata(reply: reply) else {
            return  // not a JetStream delivery
        }
        let message = NATSMessage(msg, reply: reply, wantsHeaders: wantsHeaders)
        var queued: Int32 = 0
        if let subscription { _ = natsSubscription_GetPending(subscription, &queued, nil) }
        push(IncomingDelivery(message: message, metadata: metadata), moreComing: queued > 0)
    }

    /// The most deliveries held back from a waiting consumer while more are queued in cnats.
    private static let wakeBatch = 128

    private func push(_ delivery: IncomingDelivery, moreComing: Bool) {
        let wake = state.withLock { state -> (CheckedContinuation<IncomingDelivery?, Never>, IncomingDelivery)? in
            guard !state.closed else {
                state.handBack.append(delivery.message)
                return nil
            }
            state.buffer.append(delivery)
            guard !state.waiters.isEmpty, !moreComing || state.buffer.count >= Self.wakeBatch else { return nil }
            return (state.waiters.removeFirst().continuation, state.buffer.removeFirst())
        }
        if let (waiter, first) = wake { waiter.resume(returning: first) }
    }

    /// The next delivery, waiting for one; `nil` once closed or when the task is cancelled.
    func take() async -> IncomingDelivery? {
        if let ready = state.withLock({ $0.buffer.popFirst() }) { return ready }
        let id = state.withLock { state -> UInt64 in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<IncomingDelivery?, Never>) in
                let immediate = state.withLock { state -> IncomingDelivery?? in
                    if let ready = state.buffer.popFirst() { return .some(ready) }
                    if state.closed || Task.isCancelled { return .some(nil) }
                    state.waiters.append((id, continuation))
                    return .none
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<IncomingDelivery?, Never>? in
                guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return state.waiters.remove(at: index).continuation
            }
            waiter?.resume(returning: nil)
        }
    }

    /// Stops delivery: waiters get `nil`, and what was buffered but never handed out (or arrives
    /// later) is handed back when the subscription completes.
    func close() {
        let waiters = state.withLock { state in
            state.closed = true
            state.handBack += state.buffer.map(\.message)
            state.buffer.removeAll()
            defer { state.waiters.removeAll() }
            return Array(state.waiters)
        }
        for waiter in waiters { waiter.continuation.resume(returning: nil) }
    }

    /// The subscription completed: hand back every delivery nobody took.
    fileprivate func completed() {
        let replies = state.withLock { state in
            state.closed = true
            state.handBack += state.buffer.map(\.message)
            state.buffer.removeAll()
            defer { state.handBack.removeAll() }
            return state.handBack
        }
        for message in replies { handBack(message) }
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// Keeps `handle` alive until the subscription completes.
    func retain(_ handle: SubscriptionHandle) {
        self.handle.withLock { $0 = handle }
    }
}

/// The push subscription's message handler. Runs on the subscription's cnats delivery thread;
/// the closure is the subscription's ``DeliveryInbox``.
let deliveryHandler: natsMsgHandler = { _, subscription, msg, closure in
    guard let msg else { return }
    guard let closure else {
        natsMsg_Destroy(msg)
        return
    }
    Unmanaged<DeliveryInbox>.fromOpaque(closure).takeUnretainedValue().receive(msg, subscription: subscription)
}

/// Runs on a cnats thread once the subscription is closed and its handler has returned for the
/// last time: balances the retain taken when subscribing. The release (which may destroy the
/// subscription handle) happens on another thread, outside cnats' own callback.
let deliveryComplete: natsOnCompleteCB = { closure in
    guard let closure else { return }
    let address = UInt(bitPattern: closure)
    Blocking.detach {
        let inbox = Unmanaged<DeliveryInbox>.fromOpaque(UnsafeRawPointer(bitPattern: address)!)
        inbox.takeUnretainedValue().completed()
        inbox.release()
    }
}

#if canImport(Glibc)
import Glibc
#endif
#endif
