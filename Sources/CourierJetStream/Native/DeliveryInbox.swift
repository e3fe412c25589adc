#if NATS
internal import CNATS
import CourierCore
import DequeModule
import Synchronization

/// The JetStream delivery facts carried by a message's `$JS.ACK…` reply subject.
struct AckMetadata: Sendable, Hashable {
    var stream: String
    var consumer: String
    var deliveryCount: Int
    var streamSequence: UInt64
    var consumerSequence: UInt64
    var timestamp: Int64
    var pending: UInt64

    /// Parses `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>` and the
    /// newer form with a domain and account hash after `ACK`.
    init?(reply: String) {
        let tokens = reply.split(separator: ".", omittingEmptySubsequences: false)
        guard tokens.count >= 9, tokens[0] == "$JS", tokens[1] == "ACK" else { return nil }
        let base = tokens.count == 9 ? 2 : 4
        guard tokens.count >= base + 7,
            let delivered = Int(tokens[base + 2]),
            let streamSequence = UInt64(tokens[base + 3]),
            let consumerSequence = UInt64(tokens[base + 4]),
            let timestamp = Int64(tokens[base + 5]),
            let pending = UInt64(tokens[base + 6])
        else { return nil }
        self.stream = String(tokens[base])
        self.consumer = String(tokens[base + 1])
        self.deliveryCount = delivered
        self.streamSequence = streamSequence
        self.consumerSequence = consumerSequence
        self.timestamp = timestamp
        self.pending = pending
    }
}

/// One message as it left the cnats callback: the natsMsg is already destroyed.
struct IncomingDelivery: Sendable {
    let subject: String
    let reply: String
    let metadata: AckMetadata
    /// The decoded event, or why the bytes are not one.
    let event: Result<Event, CourierError>
    /// The raw bytes, kept only when decoding failed.
    let raw: [UInt8]?
    /// The `Nats-Msg-Id`, read only when decoding failed.
    let messageID: String?
    /// Headers other than the NATS ones, read case-insensitively into lowercase keys.
    let headers: [String: String]
}

/// Reads every header of `msg` into a dictionary with lowercased keys (NATS header keys are
/// case-sensitive in cnats; Courier matches them case-insensitively). Empty when there are none.
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

/// Where a push subscription's callback leaves messages for `next()` to take. It is the closure
/// cnats passes to the message handler: retained at subscribe time and released by the
/// subscription's on-complete callback, after the last handler call has returned.
final class DeliveryInbox: Sendable {
    private struct State {
        var buffer: Deque<IncomingDelivery> = []
        var waiters: Deque<(id: UInt64, continuation: CheckedContinuation<IncomingDelivery?, Never>)> = []
        var closed = false
        var nextWaiter: UInt64 = 0
        /// Reply subjects of deliveries nobody took, handed back once the subscription completes.
        var handBack: [String] = []
    }

    private let state = Mutex(State())
    /// The subscription handle, kept alive by the inbox until cnats completes the subscription.
    private let handle = Mutex<SubscriptionHandle?>(nil)
    let wantsHeaders: Bool
    /// Hands one delivery back (nak) so another subscriber gets it now rather than after the ack
    /// wait. Called only once the subscription is complete: earlier, the server could route the
    /// redelivery straight back to this draining subscription.
    private let handBack: @Sendable (String) -> Void

    init(wantsHeaders: Bool, handBack: @escaping @Sendable (String) -> Void) {
        self.wantsHeaders = wantsHeaders
        self.handBack = handBack
    }

    /// Called on the subscription's cnats delivery thread. Copies what is needed, decodes the
    /// event there (off the Swift pool) and destroys the message.
    func receive(_ msg: OpaquePointer) {
        defer { natsMsg_Destroy(msg) }
        guard let replyPointer = natsMsg_GetReply(msg) else { return }  // not a JetStream message
        let reply = String(cString: replyPointer)
        guard let metadata = AckMetadata(reply: reply) else { return }
        let subject = String(cString: natsMsg_GetSubject(msg))
        let length = Int(natsMsg_GetDataLength(msg))
        let bytes = UnsafeRawBufferPointer(start: natsMsg_GetData(msg), count: length).bindMemory(to: UInt8.self)
        let headers = wantsHeaders ? lowercasedHeaders(of: msg) : [:]
        let event: Result<Event, CourierError>
        var raw: [UInt8]?
        var messageID: String?
        do {
            event = .success(try Event(wireJSON: bytes))
        } catch {
            event = .failure(error as? CourierError ?? CourierError(.invalidJSON, "\(error)", input: subject))
            raw = Array(bytes)
            messageID = (wantsHeaders ? headers : lowercasedHeaders(of: msg))["nats-msg-id"]
        }
        push(IncomingDelivery(subject: subject, reply: reply, metadata: metadata, event: event, raw: raw, messageID: messageID, headers: headers))
    }

    private func push(_ delivery: IncomingDelivery) {
        let waiter = state.withLock { state -> CheckedContinuation<IncomingDelivery?, Never>? in
            guard !state.closed else {
                state.handBack.append(delivery.reply)
                return nil
            }
            if let waiter = state.waiters.popFirst() { return waiter.continuation }
            state.buffer.append(delivery)
            return nil
        }
        waiter?.resume(returning: delivery)
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
            state.handBack += state.buffer.map(\.reply)
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
            state.handBack += state.buffer.map(\.reply)
            state.buffer.removeAll()
            defer { state.handBack.removeAll() }
            return state.handBack
        }
        for reply in replies { handBack(reply) }
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// Keeps `handle` alive until the subscription completes.
    func retain(_ handle: SubscriptionHandle) {
        self.handle.withLock { $0 = handle }
    }
}

/// The push subscription's message handler. Runs on the subscription's cnats delivery thread;
/// the closure is the subscription's ``DeliveryInbox``.
let deliveryHandler: natsMsgHandler = { _, _, msg, closure in
    guard let msg else { return }
    guard let closure else {
        natsMsg_Destroy(msg)
        return
    }
    Unmanaged<DeliveryInbox>.fromOpaque(closure).takeUnretainedValue().receive(msg)
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
