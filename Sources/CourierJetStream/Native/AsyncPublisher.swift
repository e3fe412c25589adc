#if NATS
internal import CNATS
import CourierCore
import DequeModule
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Pipelined JetStream publishing on core NATS publish, with one wildcard reply subscription.
///
/// Each message carries the reply subject `<inbox>.<token>`, its token a number of this
/// publisher's own. It is registered under that token before it is sent, so the reply
/// subscription, which runs on a cnats thread, finds its completion by parsing the last subject
/// token: no per-message inbox, pending map or parsed acknowledgement inside cnats (its
/// `js_PublishMsgAsync` did all three). A bounded ``AsyncWindow`` keeps at most `window`
/// publishes in flight.
///
/// Order and retries: the messages of one call are stored in order. A message that fails
/// retryably (no responders during a restart, a lost connection, a lost acknowledgement) halts
/// its batch; once nothing of the batch is in flight, the failed messages are sent again with
/// their `Nats-Msg-Id`, oldest first and the first one alone, until their deadline. Nothing is
/// sent while the connection is down (cnats would buffer it and flush it after the reconnect,
/// ahead of earlier messages lost with the old connection). The acknowledged sequences of a
/// batch are checked to increase; a batch whose stored order differs from its sent order (a
/// message refused by one stream leader while the next was stored by a new one) is counted in
/// ``reorderCount`` and logged, never hidden.
///
/// Lost acknowledgements are found by a watchdog: when the oldest publish has waited longer
/// than the request timeout, it takes every pending message back and fails it retryably, which
/// sends it again in order. So a publish is stored exactly once or fails with a retryable error:
/// never lost silently. A message keeps its token across resends (its reply subject is part of
/// the `natsMsg`), so a late acknowledgement of an earlier attempt settles the resend: the
/// same id was stored, under the sequence that acknowledgement names.
///
/// `@unchecked Sendable`: `subscription` is set once by ``start()`` before any publish and
/// cleared only by ``stop()`` when the connection closes; every other mutable state is behind
/// `state`, the atomics or the window's own lock.
final class AsyncPublisher: @unchecked Sendable {
    struct Entry {
        let batch: OrderedBatch
        let index: Int
        /// The `natsMsg` (owned by the publisher, its dedupe headers set), as a bit pattern.
        /// Its subject and id are read from it only to describe a failure.
        let msg: UInt
        /// The watchdog's tick count when the current attempt was sent (no clock read per send).
        var sentTick: UInt64 = 0
    }

    private struct State {
        /// Messages awaiting their reply, by token.
        var pending: PendingTable<Entry>
        /// Publish calls (single or batch) still running: a batch may be between sends.
        var operations = 0
        var watchdogRunning = false
        var idleWaiters: [CheckedContinuation<Void, Never>] = []

        var isIdle: Bool { pending.isEmpty && operations == 0 }

        mutating func takeIdleWaiters() -> [CheckedContinuation<Void, Never>] {
            guard isIdle, !idleWaiters.isEmpty else { return [] }
            defer { idleWaiters.removeAll() }
            return idleWaiters
        }
    }

    private func beginOperation() {
        state.withLock { $0.operations += 1 }
    }

    private func endOperation() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.operations -= 1
            return state.takeIdleWaiters()
        }
        for waiter in waiters { waiter.resume() }
    }

    let window: AsyncWindow
    private let state: Mutex<State>
    private let requestTimeout: Duration
    private let logger: Logger
    private let streamName: String
    private let connection: OpaquePointer
    private let retries = Atomic<UInt64>(0)
    private let reorders = Atomic<UInt64>(0)
    private let tokens = Atomic<UInt64>(0)
    /// Ticks of the lost-ack watchdog: a send records the current count, and the watchdog
    /// counts a message overdue once `overdueTicks` more have passed.
    private let ticks = Atomic<UInt64>(0)
    private let tick: Duration
    private let overdueTicks: UInt64
    /// Where acknowledgements arrive: `<inbox>.<token>`.
    private let inbox: String
    /// The reply subjects' prefix, `<inbox>.`, as bytes (no terminator).
    private let replyPrefix: [CChar]
    private nonisolated(unsafe) var subscription: OpaquePointer?

    init(connection: OpaquePointer, window: Int, requestTimeout: Duration, streamName: String, logger: Logger) {
        self.connection = connection
        self.window = AsyncWindow(size: window)
        state = Mutex(State(pending: PendingTable(expected: window)))
        self.requestTimeout = requestTimeout
        tick = min(requestTimeout / 4, .milliseconds(250))
        // The first tick after a send comes at most a tick later, so `requestTimeout / tick`
        // ticks and one more mean at least `requestTimeout` has passed.
        overdueTicks = UInt64((requestTimeout / tick).rounded(.up)) + 1
        self.logger = logger
        self.streamName = streamName
        inbox = ReplyInbox.make(fallbackName: "courier-publish")
        replyPrefix = (inbox + ".").utf8.map { CChar(bitPattern: $0) }
    }

    /// Subscribes to the reply subjects (blocking); called once, before any publish.
    func start() throws {
        let sub = try ReplyInbox.subscribe(
            self, connection: connection, inbox: inbox, handler: publishReplyHandler,
            what: "publish acknowledgements")
        subscription = sub
    }

    /// Stops the reply subscription (blocking); called before the connection is destroyed, when
    /// no publish call is running. Messages still registered (none, unless a call was abandoned)
    /// are freed.
    func stop() {
        if let sub = subscription {
            subscription = nil
            ReplyInbox.unsubscribe(sub)
        }
        let left = state.withLock { $0.pending.removeAll() }
        for entry in left { natsMsg_Destroy(OpaquePointer(bitPattern: entry.msg)) }
    }

    /// Publishes that were sent again after a retryable failure.
    var retryCount: UInt64 { retries.load(ordering: .relaxed) }

    /// Batches whose acknowledged sequences show they were stored out of their sent order.
    var reorderCount: UInt64 { reorders.load(ordering: .relaxed) }

    /// Publishes awaiting their acknowledgement.
    var inFlight: Int { state.withLock { $0.pending.count } }

    /// Whether no publish call is running and no publish awaits its acknowledgement.
    var isIdle: Bool { state.withLock { $0.isIdle } }

    // MARK: Publishing

    /// Publishes every message with at most `window` in flight and returns each one's result,
    /// in order.
    func publishBatch(
        _ messages: [OutgoingMessage], timeout: Duration, checkingOrder: Bool = true, oneAtATime: Bool = false
    ) async -> [Result<PublishAck, CourierError>] {
        var scratch: [UInt8] = []
        return await publish(
            count: messages.count, timeout: timeout, checkingOrder: checkingOrder, oneAtATime: oneAtATime
        ) { index, reply in
            try makeNATSMessage(messages[index], reply: reply, scratch: &scratch)
        }
    }

    /// Publishes `count` messages made one at a time by `prepare` (so serialising the next one
    /// overlaps with acknowledgements of the previous ones) with at most `window` in flight, in
    /// order, and returns each one's result in order. `prepare` gets the message's index and
    /// the reply subject its `natsMsg` must carry, and returns the message (owned by the
    /// publisher from then on) with its dedupe headers (``HeaderBlock``). A `prepare` failure
    /// is that message's result. With `oneAtATime` each message waits for the previous one's
    /// acknowledgement, so none can be stored ahead of an earlier one lost in a leader change
    /// (the resend of an atomic batch that failed, which happens only while something is wrong).
    /// With a `lane`, the call (of the batch starting at `sequence`) follows the lane's previous
    /// call (see ``PublishLane``): it may start while that one still awaits acknowledgements,
    /// and keeps the order across both.
    func publish(
        count: Int,
        timeout: Duration,
        checkingOrder: Bool = true,
        oneAtATime: Bool = false,
        lane: PublishLane? = nil,
        sequence: UInt64 = 0,
        prepare: (Int, UnsafePointer<CChar>) throws -> OpaquePointer
    ) async -> [Result<PublishAck, CourierError>] {
        guard count > 0 else { return [] }
        beginOperation()
        defer { endOperation() }
        let batch = OrderedBatch(count: count, deadline: .now + timeout)
        defer { batch.finish() }
        // The lane's previous call, while it may still fail: nothing of this one goes out before
        // all of it did, and nothing more once it halted.
        var previous = lane?.enter(batch, sequence: sequence)
        if let earlier = previous {
            await earlier.waitAllSent()
            if earlier.isFinished || earlier.isTroubled {
                if await earlier.waitFinished() {
                    failUnsent(batch, count: count, from: 0, because: earlierFailed)
                    return batch.results
                }
                previous = nil
            }
        }
        var tokenOf = [UInt64](repeating: 0, count: count)
        var reply = replyPrefix
        reply.reserveCapacity(replyPrefix.count + 21)
        // Messages ready to send before any new one: resends after a failure, oldest first.
        var queue: Deque<(index: Int, msg: OpaquePointer)> = []
        var next = 0
        var backoff = Duration.milliseconds(25)
        var probing = oneAtATime
        while true {
            while !batch.isHalted, previous?.isTroubled != true {
                let item: (index: Int, msg: OpaquePointer)
                if let first = queue.popFirst() {
                    item = first
                } else if next < count {
                    let index = next
                    next += 1
                    do {
                        tokenOf[index] = nextToken(into: &reply)
                        item = (index, try reply.withUnsafeBufferPointer { try prepare(index, $0.baseAddress!) })
                    } catch {
                        batch.resolve(
                            index, .failure(error as? CourierError ?? CourierError(.providerError, "\(error)")),
                            wasInFlight: false)
                        continue
                    }
                } else {
                    break
                }
                await window.acquire()
                // A failure came in meanwhile (here or in the lane's earlier call): keep this one
                // for the ordered resend.
                if batch.isHalted || previous?.isTroubled == true {
                    window.release()
                    queue.prepend(item)
                    break
                }
                batch.sent()
                send(
                    tokenOf[item.index],
                    Entry(
                        batch: batch, index: item.index,
                        msg: UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(item.msg)))))
                if probing { break }  // after a failure, one message alone first
            }
            if queue.isEmpty && next >= count { batch.markAllSent() }
            await batch.settled()
            if let earlier = previous, earlier.isTroubled || batch.isHalted {
                // Either call halted: nothing of this one is resent before the earlier one
                // ended (a message of it may still be lost, found only by the watchdog).
                previous = nil
                if await earlier.waitFinished() {
                    let (held, _) = batch.takeHeld()
                    for (index, msg) in Array(queue) + held {
                        natsMsg_Destroy(msg)
                        batch.resolve(index, .failure(earlierFailed), wasInFlight: false)
                    }
                    failUnsent(batch, count: count, from: next, because: earlierFailed)
                    break
                }
            }
            let (held, lastError) = batch.takeHeld()
            if held.isEmpty {
                if probing {
                    probing = oneAtATime
                    backoff = .milliseconds(25)
                }
                if queue.isEmpty && next >= count { break }
                continue
            }
            queue = Deque((Array(queue) + held).sorted { $0.index < $1.index })
            guard ContinuousClock.now + backoff < batch.deadline else {
                let error = lastError ?? CourierError(.timeout, "publish deadline passed", isRetryable: true)
                while let (index, msg) = queue.popFirst() {
                    natsMsg_Destroy(msg)
                    batch.resolve(index, .failure(error), wasInFlight: false)
                }
                failUnsent(batch, count: count, from: next, because: error)
                break
            }
            retries.add(UInt64(held.count), ordering: .relaxed)
            logger.debug(
                "resending failed publishes in order",
                metadata: [
                    "count": "\(held.count)", "from": "\(queue.first?.index ?? 0)",
                    "error": "\(lastError.map { "\($0)" } ?? "-")",
                ])
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(1))
            probing = true
        }
        let results = batch.results
        if checkingOrder { checkOrder(results) }
        return results
    }

    /// Why a lane's call failed without sending: the call before it failed, and its caller
    /// retries that one first.
    private var earlierFailed: CourierError {
        CourierError(
            .transient, "an earlier batch of the same ordered lane failed; this one waits for its retry",
            input: streamName, isRetryable: true)
    }

    /// Fails the messages from `from` on, which were never prepared.
    private func failUnsent(_ batch: OrderedBatch, count: Int, from: Int, because error: CourierError) {
        for index in from..<count { batch.resolve(index, .failure(error), wasInFlight: false) }
    }

    /// Runs `body` (another way of publishing: atomic batches) as one publish operation, so
    /// idle waits include it, and checks the order of its results.
    func operation(_ body: () async -> [Result<PublishAck, CourierError>]) async -> [Result<PublishAck, CourierError>] {
        beginOperation()
        defer { endOperation() }
        let results = await body()
        checkOrder(results)
        return results
    }

    /// Counts (and logs) a batch whose acknowledged sequences do not increase with its index.
    private func checkOrder(_ results: [Result<PublishAck, CourierError>]) {
        var last: UInt64 = 0
        for (index, result) in results.enumerated() {
            guard case .success(let ack) = result else { continue }
            if ack.sequence < last {

                reorders.add(1, ordering: .relaxed)
                logger.error(
                    "a batch was stored out of its order: the server kept a later message and lost or refused an earlier one (a crash without fsync, a leader change)",
                    metadata: ["index": "\(index)", "sequence": "\(ack.sequence)", "after": "\(last)"])
                return
            }
            last = ack.sequence
        }
    }

    /// Waits until no publish is in flight, or `timeout` passes; returns whether it is idle.
    func waitUntilIdle(timeout: Duration) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let idle = self.state.withLock { state -> Bool in
                        if state.isIdle { return true }
                        state.idleWaiters.append(continuation)
                        return false
                    }
                    if idle { continuation.resume() }
                }
                return true
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            if !first { self.releaseIdleWaiters() }
            return first
        }
    }

    private func releaseIdleWaiters() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            defer { state.idleWaiters.removeAll() }
            return state.idleWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    // MARK: Lost connections and acknowledgements

    /// The connection dropped: what is in flight may be lost, so every batch with a message in
    /// flight stops sending until those messages are resolved; nothing new may overtake them.
    /// Called on a cnats callback thread.
    func connectionLost() {
        let batches = state.withLock { state in state.pending.all.map(\.batch) }
        for batch in batches { batch.halt() }
    }

    /// The connection is back: acknowledgements of messages sent on the old connection will not
    /// come, so they are taken back now and resent in order, without waiting for the watchdog.
    /// Called on a cnats callback thread.
    func connectionRestored() {
        connectionLost()
        Blocking.detach { self.reclaimPending() }
    }

    private func startWatchdogTask() {
        Task.detached { [self] in
            while true {
                try? await Task.sleep(for: tick)
                let now = ticks.add(1, ordering: .relaxed).newValue
                let (overdue, empty) = state.withLock { state -> (Bool, Bool) in
                    if state.pending.isEmpty {
                        state.watchdogRunning = false
                        return (false, true)
                    }
                    let oldest = state.pending.all.lazy.map(\.sentTick).min() ?? now
                    return (now - oldest >= overdueTicks, false)
                }
                if empty { return }
                if overdue { reclaimPending() }
            }
        }
    }

    /// Takes every pending message back and fails each retryably, which resends it in its
    /// batch's order. Its acknowledgement, should it still come, finds nothing pending.
    private func reclaimPending() {
        let taken = state.withLock { $0.pending.removeAll() }.sorted { $0.index < $1.index }
        guard !taken.isEmpty else { return }
        logger.warning(
            "publish acknowledgements overdue; resending pending messages with their ids",
            metadata: ["count": "\(taken.count)"])
        // Every batch concerned halts before any window slot is freed: a slot freed first could
        // let a waiting sender put a later message on the wire ahead of these resends.
        for entry in taken {
            fail(
                entry, status: NATS_TIMEOUT, jsCode: jsErrCode(0),
                detail: "no acknowledgement within \(requestTimeout)", releasingWindow: false)
        }
        for _ in taken { window.release() }
    }

    // MARK: Internals

    /// The next token, written as the reply subject `<inbox>.<token>` (C string) into `reply`,
    /// in place: no allocation once `reply` has room for the longest token.
    private func nextToken(into reply: inout [CChar]) -> UInt64 {
        let token = tokens.add(1, ordering: .relaxed).newValue
        var length = 1
        var rest = token / 10
        while rest > 0 {
            length += 1
            rest /= 10
        }
        reply.removeSubrange(replyPrefix.count...)
        reply.append(contentsOf: repeatElement(0, count: length + 1))  // the digits and the terminator
        var digits = token
        for at in stride(from: reply.count - 2, through: replyPrefix.count, by: -1) {
            reply[at] = CChar(UInt8(ascii: "0") + UInt8(digits % 10))
            digits /= 10
        }
        return token
    }

    /// Registers `entry` under `token` and sends its message. On an immediate failure the
    /// entry is resolved (or held for the ordered resend). The caller holds a window slot for it.
    private func send(_ token: UInt64, _ entry: Entry) {
        var entry = entry
        entry.sentTick = ticks.load(ordering: .relaxed)
        // Never into cnats' reconnect buffer: what it flushes after a reconnect would overtake
        // earlier messages lost with the old connection.
        guard natsConnection_Status(connection) == NATS_CONN_STATUS_CONNECTED else {
            fail(entry, status: NATS_CONNECTION_DISCONNECTED, jsCode: jsErrCode(0), detail: "not connected")
            return
        }
        // Registered first: the acknowledgement may arrive before the publish call returns.
        let startWatchdog = state.withLock { state -> Bool in
            state.pending.insert(entry, for: token)
            guard !state.watchdogRunning else { return false }
            state.watchdogRunning = true
            return true
        }
        if startWatchdog { startWatchdogTask() }
        let status = natsConnection_PublishMsg(connection, OpaquePointer(bitPattern: entry.msg)!)
        guard status != NATS_OK else { return }
        let detail = natsLastErrorText()
        guard let entry = state.withLock({ $0.pending.remove(token) }) else { return }
        fail(entry, status: status, jsCode: jsErrCode(0), detail: detail)
    }

    /// Called by the reply subscription on a cnats thread with a reply it owns.
    fileprivate func handleReply(_ reply: OpaquePointer) {
        defer { natsMsg_Destroy(reply) }
        guard let token = Self.token(ofReply: reply),
            let entry = state.withLock({ $0.pending.remove(token) })
        else { return }  // not ours, or taken back by the watchdog meanwhile
        if natsMsg_IsNoResponders(reply) {
            fail(
                entry, status: NATS_NO_RESPONDERS, jsCode: jsErrCode(0),
                detail: "no stream answered for the subject (none stores it, or its leader is being elected)")
            return
        }
        let length = Int(natsMsg_GetDataLength(reply))
        let parsed = natsMsg_GetData(reply).flatMap { data in
            data.withMemoryRebound(to: UInt8.self, capacity: length) {
                PublishReply(parsing: UnsafeBufferPointer(start: $0, count: length), stream: streamName)
            }
        }
        switch parsed {
        case .stored(let ack):
            natsMsg_Destroy(OpaquePointer(bitPattern: entry.msg))
            entry.batch.resolve(entry.index, .success(ack))
            window.release()
        case .refused(let code, let description):
            fail(entry, status: NATS_ERR, jsCode: jsErrCode(UInt32(truncatingIfNeeded: code)), detail: description)
        case nil:
            // Whether it was stored is unknown, as with no reply: resent with its id.
            fail(entry, status: NATS_TIMEOUT, jsCode: jsErrCode(0), detail: "unreadable acknowledgement")
        }
    }

    /// The token in the last subject token of a reply, `<inbox>.<token>`.
    private static func token(ofReply reply: OpaquePointer) -> UInt64? {
        guard let subject = natsMsg_GetSubject(reply) else { return nil }
        var end = strlen(subject)
        var token: UInt64 = 0
        var scale: UInt64 = 1
        while end > 0 {
            let byte = UInt8(bitPattern: subject[end - 1])
            guard byte != UInt8(ascii: ".") else { break }
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9"), scale <= 1_000_000_000_000_000_000 else {
                return nil
            }
            token &+= UInt64(byte - UInt8(ascii: "0")) &* scale
            scale &*= 10
            end -= 1
        }
        return scale > 1 ? token : nil
    }

    /// Holds a retryable failure for the batch's ordered resend (halting the batch) or resolves
    /// any other failure, and only then frees the message's window slot.
    private func fail(
        _ entry: Entry, status: natsStatus, jsCode: jsErrCode, detail: String, releasingWindow: Bool = true
    ) {
        defer { if releasingWindow { window.release() } }
        let msg = OpaquePointer(bitPattern: entry.msg)!
        let subject = natsMsg_GetSubject(msg).map { String(cString: $0) } ?? "?"
        var id: UnsafePointer<CChar>?
        let messageID = natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) == NATS_OK ? id.map { String(cString: $0) } : nil
        let error = CourierError.nats(
            status,
            "publish of '\(messageID ?? "?")' to '\(subject)' failed",
            input: subject,
            jsCode: jsCode,
            detail: detail
        )
        if isRetryablePublishFailure(status, jsCode) {
            var retryable = error
            retryable.isRetryable = true
            entry.batch.hold(entry.index, msg: msg, error: retryable)
            return
        }
        natsMsg_Destroy(msg)
        entry.batch.resolve(entry.index, .failure(error))
    }
}

/// Runs on the reply subscription's cnats thread; the closure is the `AsyncPublisher`, kept
/// alive by the retain taken in `start()`.
private let publishReplyHandler: natsMsgHandler = { _, _, msg, closure in
    guard let msg, let closure else { return }
    Unmanaged<AsyncPublisher>.fromOpaque(closure).takeUnretainedValue().handleReply(msg)
}

#endif
