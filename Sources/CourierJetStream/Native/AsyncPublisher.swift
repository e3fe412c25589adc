#if NATS
internal import CNATS
import CourierCore
import DequeModule
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One call's messages in flight: their results, the messages held back after a retryable
/// failure (kept for an ordered resend), and how many are on the wire.
///
/// Per-batch order is the invariant: once one message failed retryably the batch stops
/// sending (``isHalted``), waits until nothing of it is in flight, and resends what failed, in
/// index order, the first one alone. A message is never resent on a timer of its own, so a
/// later message cannot overtake an earlier one that failed.
final class OrderedBatch: Sendable {
    private struct State {
        var results: [Result<PublishAck, CourierError>?]
        var remaining: Int
        var inFlight = 0
        var halted = false
        /// Messages that failed retryably, by index, with the failure.
        var held: [Int: (msg: UInt, error: CourierError)] = [:]
        var settledWaiter: CheckedContinuation<Void, Never>?

        mutating func leaveFlight() -> CheckedContinuation<Void, Never>? {
            inFlight -= 1
            guard inFlight == 0, let waiter = settledWaiter else { return nil }
            settledWaiter = nil
            return waiter
        }
    }

    private let state: Mutex<State>
    let deadline: ContinuousClock.Instant

    init(count: Int, deadline: ContinuousClock.Instant) {
        state = Mutex(State(results: Array(repeating: nil, count: count), remaining: count))
        self.deadline = deadline
    }

    /// Whether a message failed retryably and the batch must stop sending new ones.
    var isHalted: Bool { state.withLock { $0.halted } }

    func sent() { state.withLock { $0.inFlight += 1 } }

    /// Stops sending new messages until what is in flight settled (the connection was lost).
    func halt() { state.withLock { $0.halted = true } }

    /// A message's final result.
    func resolve(_ index: Int, _ result: Result<PublishAck, CourierError>, wasInFlight: Bool = true) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.results[index] == nil {
                state.results[index] = result
                state.remaining -= 1
            }
            return wasInFlight ? state.leaveFlight() : nil
        }
        waiter?.resume()
    }

    /// A message that failed retryably: kept for an ordered resend; the batch halts.
    func hold(_ index: Int, msg: OpaquePointer, error: CourierError) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.held[index] = (UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(msg))), error)
            state.halted = true
            return state.leaveFlight()
        }
        waiter?.resume()
    }

    /// Waits until none of the batch's messages is in flight.
    func settled() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.inFlight == 0 { return true }
                state.settledWaiter = continuation
                return false
            }
            if now { continuation.resume() }
        }
    }

    /// The held messages, oldest index first, with the last failure; the batch may send again.
    func takeHeld() -> (messages: [(index: Int, msg: OpaquePointer)], lastError: CourierError?) {
        state.withLock { state in
            let held = state.held.sorted { $0.key < $1.key }
            state.held.removeAll()
            state.halted = false
            return (
                held.map { ($0.key, OpaquePointer(bitPattern: $0.value.msg)!) },
                held.last?.value.error
            )
        }
    }

    /// Every result, once all are in.
    var results: [Result<PublishAck, CourierError>] { state.withLock { $0.results.map { $0! } } }

    var isComplete: Bool { state.withLock { $0.remaining == 0 } }
}

/// Pipelined JetStream publishing over `js_PublishMsgAsync` with an ack handler.
///
/// Every message is registered (keyed by its `natsMsg` address) before it is sent, so the ack
/// handler, which runs on a cnats thread, finds its completion. A bounded ``AsyncWindow`` keeps
/// at most `window` publishes in flight, so the cnats call never stalls.
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
/// Lost acknowledgements are found by a watchdog rather than by cnats' per-message `MaxWait`
/// timers (which cost a third of the throughput in 3.4.1): when the oldest publish has waited
/// longer than the request timeout, the watchdog takes every pending message back from cnats
/// (`js_PublishAsyncGetPendingList`) and fails it retryably, which sends it again in order. So a
/// publish is stored exactly once or fails with a retryable error: never lost silently.
///
/// `@unchecked Sendable`: `context` and `connection` are set once, right after the connection
/// is made and before any publish; every other mutable state is behind `state`, the atomics or
/// the window's own lock; the JetStream context is reached from other threads only under
/// `contextAlive`, which the connection clears before destroying it.
final class AsyncPublisher: @unchecked Sendable {
    struct Entry {
        let batch: OrderedBatch
        let index: Int
        let subject: String
        let messageID: String
        let expectedLastSequence: UInt64?
        /// When the current attempt was sent, for the lost-ack watchdog.
        var sentAt: ContinuousClock.Instant = .now
    }

    private struct State {
        var pending: [Int: Entry] = [:]
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
    private let state = Mutex(State())
    private let requestTimeout: Duration
    private let logger: Logger
    private let streamName: String
    private let streamNameC: UnsafeMutablePointer<CChar>
    /// The JetStream context and its connection; set once right after they are created, before
    /// any publish.
    nonisolated(unsafe) var context: OpaquePointer?
    nonisolated(unsafe) var connection: OpaquePointer?
    private let retries = Atomic<UInt64>(0)
    private let reorders = Atomic<UInt64>(0)
    /// Whether `context` is still alive. The watchdog and reconnect handling take pending messages
    /// back from cnats on other threads; they hold this lock for the call, and the connection
    /// clears it (``invalidate()``) before destroying the context.
    private let contextAlive = Mutex(true)

    init(window: Int, requestTimeout: Duration, streamName: String, logger: Logger) {
        self.window = AsyncWindow(size: window)
        self.requestTimeout = requestTimeout
        self.logger = logger
        self.streamName = streamName
        self.streamNameC = strdup(streamName)
    }

    deinit { free(streamNameC) }

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
        await publish(count: messages.count, timeout: timeout, checkingOrder: checkingOrder, oneAtATime: oneAtATime) {
            index in
            let message = messages[index]
            return (try makeNATSMessage(message), message.subject, message.messageID, message.expectedLastSequence)
        }
    }

    /// What one publish needs: its `natsMsg` (owned by the publisher from then on), its subject
    /// and dedupe id, and the expected last sequence if any.
    typealias Prepared = (msg: OpaquePointer, subject: String, messageID: String, expectedLastSequence: UInt64?)

    /// Publishes `count` messages made one at a time by `prepare` (so serialising the next one
    /// overlaps with acknowledgements of the previous ones) with at most `window` in flight, in
    /// order, and returns each one's result in order. A `prepare` failure is that message's
    /// result. With `oneAtATime` each message waits for the previous one's acknowledgement, so
    /// none can be stored ahead of an earlier one lost in a leader change (the resend of an
    /// atomic batch that failed, which happens only while something is wrong).
    func publish(
        count: Int,
        timeout: Duration,
        checkingOrder: Bool = true,
        oneAtATime: Bool = false,
        prepare: (Int) throws -> Prepared
    ) async -> [Result<PublishAck, CourierError>] {
        guard count > 0 else { return [] }
        beginOperation()
        defer { endOperation() }
        let batch = OrderedBatch(count: count, deadline: .now + timeout)
        var made: [Prepared?] = Array(repeating: nil, count: count)
        // Messages ready to send before any new one: resends after a failure, oldest first.
        var queue: Deque<(index: Int, msg: OpaquePointer)> = []
        var next = 0
        var backoff = Duration.milliseconds(25)
        var probing = oneAtATime
        while true {
            while !batch.isHalted {
                let item: (index: Int, msg: OpaquePointer)
                if let first = queue.popFirst() {
                    item = first
                } else if next < count {
                    let index = next
                    next += 1
                    do {
                        let prepared = try prepare(index)
                        made[index] = prepared
                        item = (index, prepared.msg)
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
                if batch.isHalted {  // a failure came in meanwhile: keep this one for the ordered resend
                    window.release()
                    queue.prepend(item)
                    break
                }
                let info = made[item.index]!
                batch.sent()
                send(
                    item.msg,
                    Entry(
                        batch: batch, index: item.index, subject: info.subject, messageID: info.messageID,
                        expectedLastSequence: info.expectedLastSequence))
                if probing { break }  // after a failure, one message alone first
            }
            await batch.settled()
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
                while next < count {
                    batch.resolve(next, .failure(error), wasInFlight: false)
                    next += 1
                }
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

    /// Called before the JetStream context is destroyed: nothing may reach into it afterwards.
    func invalidate() {
        contextAlive.withLock { $0 = false }
    }

    // MARK: Lost connections and acknowledgements

    /// The connection dropped: what is in flight may be lost, so every batch with a message in
    /// flight stops sending until those messages are resolved; nothing new may overtake them.
    /// Called on a cnats callback thread.
    func connectionLost() {
        let batches = state.withLock { state in state.pending.values.map(\.batch) }
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
                try? await Task.sleep(for: min(requestTimeout / 4, .milliseconds(250)))
                let (overdue, empty) = state.withLock { state -> (Bool, Bool) in
                    if state.pending.isEmpty {
                        state.watchdogRunning = false
                        return (false, true)
                    }
                    let oldest = state.pending.values.lazy.map(\.sentAt).min() ?? .now
                    return (ContinuousClock.now - oldest > requestTimeout, false)
                }
                if empty { return }
                if overdue { _ = try? await Blocking.run { self.reclaimPending() } }
            }
        }
    }

    /// Takes every pending message back from cnats and fails each retryably, which resends it
    /// in its batch's order. Blocking-call thread only.
    private func reclaimPending() {
        // cnats 3.4.1 dereferences its pending map without checking it exists: only ask when an
        // async publish is known to be pending (and so the map exists).
        guard !state.withLock({ $0.pending.isEmpty }) else { return }
        var list = natsMsgList()
        let taken = contextAlive.withLock { alive in
            alive && js_PublishAsyncGetPendingList(&list, context) == NATS_OK
        }
        guard taken else { return }
        defer { natsMsgList_Destroy(&list) }
        logger.warning(
            "publish acknowledgements overdue; resending pending messages with their ids",
            metadata: ["count": "\(list.Count)"])
        // Every batch concerned halts before any window slot is freed: a slot freed first could
        // let a waiting sender put a later message on the wire ahead of these resends.
        var reclaimed = 0
        for i in 0..<Int(list.Count) {
            guard let msg = list.Msgs[i] else { continue }
            let key = Int(bitPattern: UnsafeRawPointer(msg))
            guard let entry = state.withLock({ $0.pending.removeValue(forKey: key) }) else { continue }
            list.Msgs[i] = nil  // ours again: natsMsgList_Destroy must not free it
            fail(
                msg, entry, status: NATS_TIMEOUT, jsCode: jsErrCode(0),
                detail: "no acknowledgement within \(requestTimeout)", releasingWindow: false)
            reclaimed += 1
        }
        for _ in 0..<reclaimed { window.release() }
    }

    // MARK: Internals

    /// Registers and sends `msg`. On an immediate failure the entry is resolved (or held for
    /// the ordered resend). The caller holds a window slot for it.
    private func send(_ msg: OpaquePointer, _ entry: Entry) {
        let key = Int(bitPattern: UnsafeRawPointer(msg))
        var entry = entry
        entry.sentAt = .now
        // Never into cnats' reconnect buffer: what it flushes after a reconnect would overtake
        // earlier messages lost with the old connection.
        if let connection, natsConnection_Status(connection) != NATS_CONN_STATUS_CONNECTED {
            fail(msg, entry, status: NATS_CONNECTION_DISCONNECTED, jsCode: jsErrCode(0), detail: "not connected")
            return
        }
        let startWatchdog = state.withLock { state -> Bool in
            state.pending[key] = entry
            guard !state.watchdogRunning else { return false }
            state.watchdogRunning = true
            return true
        }
        if startWatchdog { startWatchdogTask() }
        var options = jsPubOptions()
        jsPubOptions_Init(&options)
        if let expected = entry.expectedLastSequence { options.ExpectLastSeq = expected }
        let status = entry.messageID.withCString { id -> natsStatus in
            options.MsgId = id
            var owned: OpaquePointer? = msg
            return js_PublishMsgAsync(context, &owned, &options)
        }
        guard status != NATS_OK else { return }
        let detail = natsLastErrorText()
        guard let entry = state.withLock({ $0.pending.removeValue(forKey: key) }) else { return }
        fail(msg, entry, status: status, jsCode: jsErrCode(0), detail: detail)
    }

    /// Called by the ack handler on a cnats thread.
    fileprivate func handleAck(
        _ msg: OpaquePointer,
        _ ack: UnsafeMutablePointer<jsPubAck>?,
        _ failure: UnsafeMutablePointer<jsPubAckErr>?
    ) {
        let key = Int(bitPattern: UnsafeRawPointer(msg))
        guard let entry = state.withLock({ $0.pending.removeValue(forKey: key) }) else {
            natsMsg_Destroy(msg)
            return
        }
        if let ack {
            let stream = strcmp(ack.pointee.Stream, streamNameC) == 0 ? streamName : String(cString: ack.pointee.Stream)
            natsMsg_Destroy(msg)
            entry.batch.resolve(
                entry.index,
                .success(PublishAck(sequence: ack.pointee.Sequence, stream: stream, duplicate: ack.pointee.Duplicate)))
            window.release()
            return
        }
        let status = failure?.pointee.Err ?? NATS_ERR
        let code = failure?.pointee.ErrCode ?? jsErrCode(0)
        let detail = failure?.pointee.ErrText.map { String(cString: $0) } ?? ""
        fail(msg, entry, status: status, jsCode: code, detail: detail)
    }

    /// Holds a retryable failure for the batch's ordered resend (halting the batch) or resolves
    /// any other failure, and only then frees the message's window slot.
    private func fail(
        _ msg: OpaquePointer, _ entry: Entry, status: natsStatus, jsCode: jsErrCode, detail: String,
        releasingWindow: Bool = true
    ) {
        defer { if releasingWindow { window.release() } }
        let error = CourierError.nats(
            status,
            "publish of '\(entry.messageID)' to '\(entry.subject)' failed",
            input: entry.subject,
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

/// A `natsMsg` for `message` with its headers (the caller owns it).
func makeNATSMessage(_ message: OutgoingMessage) throws -> OpaquePointer {
    try makeNATSMessage(subject: message.subject, payload: message.payload, headers: message.headers)
}

/// A `natsMsg` with a copy of `payload` and `headers` (the caller owns it).
func makeNATSMessage(subject: String, payload: [UInt8], headers: [(String, String)]) throws -> OpaquePointer {
    var msg: OpaquePointer?
    let status = payload.withUnsafeBufferPointer { bytes in
        bytes.withMemoryRebound(to: CChar.self) { chars in
            natsMsg_Create(&msg, subject, nil, chars.baseAddress, Int32(chars.count))
        }
    }
    guard status == NATS_OK, let msg else {
        throw CourierError.nats(
            status, "cannot create a message for '\(subject)'", input: subject, detail: natsLastErrorText())
    }
    for (name, value) in headers {
        let headerStatus = natsMsgHeader_Add(msg, name, value)
        guard headerStatus == NATS_OK else {
            natsMsg_Destroy(msg)
            throw CourierError.nats(
                headerStatus, "cannot set header '\(name)'", input: name, detail: natsLastErrorText())
        }
    }
    return msg
}

/// The cnats async-publish ack handler. Runs on the JetStream context's reply-subscription
/// thread; the closure is the `AsyncPublisher`, kept alive by the connection that owns the context.
let publishAckHandler: jsPubAckHandler = { _, msg, ack, failure, closure in
    guard let msg, let closure else { return }
    Unmanaged<AsyncPublisher>.fromOpaque(closure).takeUnretainedValue().handleAck(msg, ack, failure)
}
#endif
