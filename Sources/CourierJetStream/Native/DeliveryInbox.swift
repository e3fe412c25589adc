#if NATS
internal import CNATS
import CourierCore
import DequeModule
import Synchronization

/// The JetStream delivery facts carried by a message's `$JS.ACK…` reply subject, parsed
/// without allocating: `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>`,
/// or the newer form with a domain and account hash after `ACK` (and an optional random suffix).
package struct AckMetadata: Sendable, Hashable {
    package var deliveryCount: Int
    package var streamSequence: UInt64
    package var consumerSequence: UInt64
    package var timestamp: Int64
    package var pending: UInt64

    init?(reply: UnsafePointer<CChar>) {
        self.init(reply: reply, length: strlen(reply))
    }

    /// The facts of `reply`, whose length the caller already knows.
    init?(reply: UnsafePointer<CChar>, length: Int) {
        guard
            let parsed = reply.withMemoryRebound(
                to: UInt8.self, capacity: length,
                {
                    AckMetadata(utf8: UnsafeBufferPointer(start: $0, count: length))
                })
        else { return nil }
        self = parsed
    }

    /// Parses the subject in two passes over its bytes: one counts the tokens (which says the
    /// form), one walks back over the five numbers at the end (past the suffix, if any).
    package init?(utf8 bytes: UnsafeBufferPointer<UInt8>) {
        let dot = UInt8(ascii: ".")
        guard bytes.count > 8, let base = bytes.baseAddress,
            base[0] == UInt8(ascii: "$"), base[1] == UInt8(ascii: "J"), base[2] == UInt8(ascii: "S"),
            base[3] == dot, base[4] == UInt8(ascii: "A"), base[5] == UInt8(ascii: "C"),
            base[6] == UInt8(ascii: "K"), base[7] == dot
        else { return nil }
        var tokens = 1
        for i in 0..<bytes.count where base[i] == dot { tokens += 1 }
        guard tokens == 9 || tokens == 11 || tokens == 12 else { return nil }
        // `end` is where the token being read ends (exclusive). At least nine tokens, so walking
        // back over six of them stays inside the subject, after `$JS.ACK.`.
        var end = bytes.count
        if tokens == 12 {
            while base[end - 1] != dot { end -= 1 }
            end -= 1
        }
        guard let pending = Self.number(base, endingAt: &end), let timestamp = Self.number(base, endingAt: &end),
            let consumerSequence = Self.number(base, endingAt: &end),
            let streamSequence = Self.number(base, endingAt: &end), let delivered = Self.number(base, endingAt: &end),
            let deliveryCount = Int(exactly: delivered)
        else { return nil }
        self.deliveryCount = deliveryCount
        self.streamSequence = streamSequence
        self.consumerSequence = consumerSequence
        self.timestamp = Int64(bitPattern: timestamp)
        self.pending = pending
    }

    /// The number that ends at `end` (exclusive) and starts after a dot past `$JS.ACK.`; moves
    /// `end` to that dot. Nil when the token is empty, not all digits, or past `UInt64`.
    private static func number(_ base: UnsafePointer<UInt8>, endingAt end: inout Int) -> UInt64? {
        var from = end
        while from > 8, base[from - 1] != UInt8(ascii: ".") { from -= 1 }
        defer { end = from - 1 }
        // `UInt64.max` has 20 digits. The first 19 of a token always fit; only the last digit
        // of a 20-digit token can overflow.
        guard from < end, end - from <= 20 else { return nil }
        var value: UInt64 = 0
        for i in from..<(end - 1) {
            let digit = base[i] &- 0x30
            guard digit < 10 else { return nil }
            value = value &* 10 &+ UInt64(digit)
        }
        let last = base[end - 1] &- 0x30
        let (times, overflow) = value.multipliedReportingOverflow(by: 10)
        let (sum, carry) = times.addingReportingOverflow(UInt64(last))
        guard last < 10, !overflow, !carry else { return nil }
        return sum
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

    init(_ msg: OpaquePointer, reply: UnsafePointer<CChar>, replyLength: Int, wantsHeaders: Bool) {
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

/// Owns one `natsSubscription` handle. The subscription's ``InboxBinding`` keeps it alive until
/// cnats reports the subscription complete, so it is never destroyed while a drain is running
/// (destroying a draining subscription drops the messages still queued for it).
///
/// `@unchecked Sendable`: the handle is set once in `init`; the cnats calls made on it from
/// several threads (drain, unsubscribe, pending counts) are thread-safe; `draining` is atomic;
/// it is destroyed in `deinit`, after the inbox released the last reference on completion.
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

/// A push subscription's lifecycle and buffer as a state machine: open (deliveries are buffered
/// or handed to a waiting consumer), closed (`close()` asked cnats to drain; what arrives is kept
/// to hand back), completed (cnats delivered the last message; what nobody took is handed back).
/// Transitions return what the caller must do — resume a waiter, hand messages back — and the
/// caller does it outside the lock.
struct SubscriptionStateMachine {
    typealias Waiter = CheckedContinuation<IncomingDelivery?, Never>

    private enum Phase {
        case open
        case closed
        case completed
    }

    private var phase = Phase.open
    private var buffer: Deque<IncomingDelivery> = []
    private var waiters: Deque<(id: UInt64, continuation: Waiter)> = []
    private var nextWaiter: UInt64 = 0
    /// Deliveries nobody took, handed back once the subscription completes.
    private var handBack: [NATSMessage] = []

    /// The most deliveries held back from a waiting consumer while more are queued in cnats.
    static let wakeBatch = 128

    var isClosed: Bool { phase != .open }

    /// A delivery arrived (on the cnats delivery thread). Returns the waiter to resume with it, if
    /// one should be woken now: only once cnats has nothing more queued (or enough is buffered),
    /// so a burst costs one wake-up, not one per message.
    mutating func received(_ delivery: IncomingDelivery, moreComing: Bool) -> (Waiter, IncomingDelivery)? {
        guard phase == .open else {
            handBack.append(delivery.message)
            return nil
        }
        buffer.append(delivery)
        guard !waiters.isEmpty, !moreComing || buffer.count >= Self.wakeBatch else { return nil }
        return (waiters.removeFirst().continuation, buffer.removeFirst())
    }

    /// What a consumer asking for the next delivery gets.
    enum TakeAction {
        case deliver(IncomingDelivery)
        case ended
        case wait
    }

    mutating func take() -> TakeAction {
        if let ready = buffer.popFirst() { return .deliver(ready) }
        return phase == .open ? .wait : .ended
    }

    /// A waiter id for the consumer about to wait.
    mutating func nextWaiterID() -> UInt64 {
        nextWaiter += 1
        return nextWaiter
    }

    /// Parks `continuation` unless something is ready or the subscription ended.
    mutating func park(_ id: UInt64, _ continuation: Waiter, cancelled: Bool) -> TakeAction {
        switch take() {
        case .wait where !cancelled:
            waiters.append((id, continuation))
            return .wait
        case .wait: return .ended
        case let action: return action
        }
    }

    /// The waiter `id` was cancelled: returns it to resume with `nil`, if still parked.
    mutating func cancel(_ id: UInt64) -> Waiter? {
        guard let index = waiters.firstIndex(where: { $0.id == id }) else { return nil }
        return waiters.remove(at: index).continuation
    }

    /// What closing takes.
    enum CloseAction {
        /// First close: drain the cnats subscription and resume these waiters with `nil`.
        case drain(waiters: [Waiter])
        /// Already closed.
        case none
    }

    mutating func close() -> CloseAction {
        guard phase == .open else { return .none }
        phase = .closed
        handBack += buffer.map(\.message)
        buffer.removeAll()
        defer { waiters.removeAll() }
        return .drain(waiters: waiters.map(\.continuation))
    }

    /// cnats completed the subscription: returns the waiters to resume with `nil` and every
    /// delivery nobody took, to hand back.
    mutating func completed() -> (waiters: [Waiter], handBack: [NATSMessage]) {
        phase = .completed
        handBack += buffer.map(\.message)
        buffer.removeAll()
        defer {
            handBack.removeAll()
            waiters.removeAll()
        }
        return (waiters.map(\.continuation), handBack)
    }
}

/// Where a push subscription's callback leaves messages for `next()` to take, through one
/// ``InboxBinding`` per cnats subscription (a second one replaces the first after a stall).
final class DeliveryInbox: Sendable {
    private let state = Mutex(SubscriptionStateMachine())
    /// The id of the binding (cnats subscription) whose completion ends the inbox; an older one,
    /// replaced after a stall, completes without ending it.
    private let currentBinding = Atomic<UInt64>(0)
    private let bindingIDs = Atomic<UInt64>(0)
    /// Deliveries received so far, over every binding (for the stall watch).
    private let arrivals = Atomic<UInt64>(0)
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
    func receive(_ msg: OpaquePointer, subscription: OpaquePointer?) {
        defer { natsMsg_Destroy(msg) }
        guard let reply = natsMsg_GetReply(msg) else { return }  // not a JetStream delivery
        let replyLength = strlen(reply)
        guard let metadata = AckMetadata(reply: reply, length: replyLength) else { return }
        let message = NATSMessage(msg, reply: reply, replyLength: replyLength, wantsHeaders: wantsHeaders)
        var queued: Int32 = 0
        if let subscription { _ = natsSubscription_GetPending(subscription, &queued, nil) }
        let delivery = IncomingDelivery(message: message, metadata: metadata)
        arrivals.add(1, ordering: .relaxed)
        if let (waiter, first) = state.withLock({ $0.received(delivery, moreComing: queued > 0) }) {
            waiter.resume(returning: first)
        }
    }

    /// The next delivery, waiting for one; `nil` once closed or when the task is cancelled.
    func take() async -> IncomingDelivery? {
        switch state.withLock({ $0.take() }) {
        case .deliver(let ready): return ready
        case .ended: return nil
        case .wait: break
        }
        let id = state.withLock { $0.nextWaiterID() }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<IncomingDelivery?, Never>) in
                switch state.withLock({ $0.park(id, continuation, cancelled: Task.isCancelled) }) {
                case .deliver(let ready): continuation.resume(returning: ready)
                case .ended: continuation.resume(returning: nil)
                case .wait: break
                }
            }
        } onCancel: {
            state.withLock { $0.cancel(id) }?.resume(returning: nil)
        }
    }

    /// Stops delivery: waiters get `nil`, and what was buffered but never handed out (or arrives
    /// later) is handed back when the subscription completes. Returns whether this call closed
    /// it (the caller then drains the cnats subscription).
    @discardableResult
    func close() -> Bool {
        guard case .drain(let waiters) = state.withLock({ $0.close() }) else { return false }
        for waiter in waiters { waiter.resume(returning: nil) }
        return true
    }

    /// The subscription completed: hand back every delivery nobody took.
    fileprivate func completed() {
        let (waiters, replies) = state.withLock { $0.completed() }
        for waiter in waiters { waiter.resume(returning: nil) }
        for message in replies { handBack(message) }
    }

    var isClosed: Bool { state.withLock { $0.isClosed } }

    /// Deliveries received so far.
    var received: UInt64 { arrivals.load(ordering: .relaxed) }

    /// A binding for a new cnats subscription feeding this inbox.
    func newBinding() -> InboxBinding {
        InboxBinding(inbox: self, id: bindingIDs.add(1, ordering: .relaxed).newValue)
    }

    /// From now on, the completion of `binding` (and no other) ends the inbox.
    func makeCurrent(_ binding: InboxBinding) {
        currentBinding.store(binding.id, ordering: .releasing)
    }

    /// No binding's completion ends the inbox until the next ``makeCurrent(_:)``.
    func detachCurrent() {
        currentBinding.store(0, ordering: .releasing)
    }

    /// A binding's cnats subscription completed: the inbox ends if it was the current one.
    fileprivate func bindingCompleted(_ id: UInt64) {
        guard currentBinding.load(ordering: .acquiring) == id else { return }
        completed()
    }
}

/// One cnats subscription feeding a ``DeliveryInbox``: the closure cnats passes to the message
/// and completion handlers. Retained at subscribe time, released by the completion handler
/// after the last handler call returned; it keeps its subscription handle alive until then
/// (destroying a draining subscription drops the messages still queued for it).
final class InboxBinding: Sendable {
    let inbox: DeliveryInbox
    let id: UInt64
    private let handle = Mutex<SubscriptionHandle?>(nil)

    init(inbox: DeliveryInbox, id: UInt64) {
        self.inbox = inbox
        self.id = id
    }

    /// Keeps `handle` alive until the subscription completes.
    func retain(_ handle: SubscriptionHandle) {
        self.handle.withLock { $0 = handle }
    }

    fileprivate func completed() {
        inbox.bindingCompleted(id)
        handle.withLock { $0 = nil }
    }
}

/// The push subscription's message handler. Runs on the subscription's cnats delivery thread;
/// the closure is the subscription's ``InboxBinding``.
let deliveryHandler: natsMsgHandler = { _, subscription, msg, closure in
    guard let msg else { return }
    guard let closure else {
        natsMsg_Destroy(msg)
        return
    }
    Unmanaged<InboxBinding>.fromOpaque(closure).takeUnretainedValue().inbox.receive(msg, subscription: subscription)
}

/// Runs on a cnats thread once the subscription is closed and its handler has returned for the
/// last time: balances the retain taken when subscribing. The release (which may destroy the
/// subscription handle) happens on another thread, outside cnats' own callback.
let deliveryComplete: natsOnCompleteCB = { closure in
    guard let closure else { return }
    let address = UInt(bitPattern: closure)
    Blocking.detach {
        let binding = Unmanaged<InboxBinding>.fromOpaque(UnsafeRawPointer(bitPattern: address)!)
        binding.takeUnretainedValue().completed()
        binding.release()
    }
}

#if canImport(Glibc)
import Glibc
#endif
#endif
