#if NATS
internal import CNATS
import CourierCore
import DequeModule
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A message to publish: subject, bytes, headers and its dedupe id.
public struct OutgoingMessage: Sendable {
    /// The subject.
    public var subject: String
    /// The message body.
    public var payload: [UInt8]
    /// Extra headers (the dedupe and expected-sequence headers are added from the fields below).
    public var headers: [(String, String)]
    /// The `Nats-Msg-Id`: retrying with the same id never stores the message twice.
    public var messageID: String
    /// When set, the stream's last sequence must equal this value.
    public var expectedLastSequence: UInt64?

    /// Creates an outgoing message.
    public init(
        subject: String,
        payload: [UInt8],
        headers: [(String, String)] = [],
        messageID: String,
        expectedLastSequence: UInt64? = nil
    ) {
        self.subject = subject
        self.payload = payload
        self.headers = headers
        self.messageID = messageID
        self.expectedLastSequence = expectedLastSequence
    }
}

/// Collects the results of one batch of async publishes and wakes the publisher when the last
/// one arrives.
final class BatchCollector: Sendable {
    private struct State {
        var results: [Result<PublishAck, CourierError>?]
        var remaining: Int
        var continuation: CheckedContinuation<[Result<PublishAck, CourierError>], Never>?
    }

    private let state: Mutex<State>

    init(count: Int) {
        state = Mutex(State(results: Array(repeating: nil, count: count), remaining: count, continuation: nil))
    }

    func resolve(_ index: Int, _ result: Result<PublishAck, CourierError>) {
        let finished = state.withLock {
            state -> (
                CheckedContinuation<[Result<PublishAck, CourierError>], Never>, [Result<PublishAck, CourierError>]
            )? in
            guard state.results[index] == nil else { return nil }
            state.results[index] = result
            state.remaining -= 1
            guard state.remaining == 0, let continuation = state.continuation else { return nil }
            state.continuation = nil
            return (continuation, state.results.map { $0! })
        }
        if let (continuation, results) = finished { continuation.resume(returning: results) }
    }

    func wait() async -> [Result<PublishAck, CourierError>] {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> [Result<PublishAck, CourierError>]? in
                if state.remaining == 0 { return state.results.map { $0! } }
                state.continuation = continuation
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }
}

/// Pipelined JetStream publishing over `js_PublishMsgAsync` with an ack handler.
///
/// Every message is registered (keyed by its `natsMsg` address) before it is sent, so the ack
/// handler, which runs on a cnats thread, finds its completion. A bounded ``AsyncWindow`` keeps
/// at most `window` publishes in flight, so the cnats call never stalls. A publish that fails
/// retryably (no responders during a restart, a lost connection) is sent again with the same
/// `Nats-Msg-Id` after a short backoff until its deadline.
///
/// Lost acknowledgements are found by a watchdog rather than by cnats' per-message `MaxWait`
/// timers (which cost a third of the throughput in 3.4.1): when the oldest publish has waited
/// longer than the request timeout, the watchdog takes every pending message back from cnats
/// (`js_PublishAsyncGetPendingList`) and sends each again with its id, or fails it once its
/// deadline passed. So a publish is stored exactly once or fails with a retryable error: never
/// lost silently.
final class AsyncPublisher: @unchecked Sendable {
    struct Entry {
        let collector: BatchCollector
        let index: Int
        let subject: String
        let messageID: String
        let expectedLastSequence: UInt64?
        let deadline: ContinuousClock.Instant
        var attempts: Int
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
    /// The JetStream context; set once right after it is created, before any publish.
    nonisolated(unsafe) var context: OpaquePointer?
    private let retries = Atomic<UInt64>(0)

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

    /// Publishes awaiting their acknowledgement.
    var inFlight: Int { state.withLock { $0.pending.count } }

    /// Whether no publish call is running and no publish awaits its acknowledgement.
    var isIdle: Bool { state.withLock { $0.isIdle } }

    // MARK: Publishing

    /// Publishes every message with at most `window` in flight and returns each one's result,
    /// in order.
    func publishBatch(_ messages: [OutgoingMessage], timeout: Duration) async -> [Result<PublishAck, CourierError>] {
        await publish(count: messages.count, timeout: timeout) { index in
            let message = messages[index]
            return (try makeNATSMessage(message), message.subject, message.messageID, message.expectedLastSequence)
        }
    }

    /// What one publish needs: its `natsMsg` (owned by the publisher from then on), its subject
    /// and dedupe id, and the expected last sequence if any.
    typealias Prepared = (msg: OpaquePointer, subject: String, messageID: String, expectedLastSequence: UInt64?)

    /// Publishes `count` messages made one at a time by `prepare` (so serialising the next one
    /// overlaps with acknowledgements of the previous ones) with at most `window` in flight, and
    /// returns each one's result in order. A `prepare` failure is that message's result.
    func publish(
        count: Int,
        timeout: Duration,
        prepare: (Int) throws -> Prepared
    ) async -> [Result<PublishAck, CourierError>] {
        guard count > 0 else { return [] }
        beginOperation()
        defer { endOperation() }
        let collector = BatchCollector(count: count)
        let deadline = ContinuousClock.now + timeout
        for index in 0..<count {
            let prepared: Prepared
            do {
                prepared = try prepare(index)
            } catch {
                collector.resolve(index, .failure(error as? CourierError ?? CourierError(.providerError, "\(error)")))
                continue
            }
            await window.acquire()
            send(
                prepared.msg,
                Entry(
                    collector: collector,
                    index: index,
                    subject: prepared.subject,
                    messageID: prepared.messageID,
                    expectedLastSequence: prepared.expectedLastSequence,
                    deadline: deadline,
                    attempts: 1
                )
            )
        }
        return await collector.wait()
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

    // MARK: Lost acknowledgements

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

    /// Takes every pending message back from cnats and sends each again with its id (or fails
    /// it when its deadline passed). Blocking-call thread only.
    private func reclaimPending() {
        var list = natsMsgList()
        guard js_PublishAsyncGetPendingList(&list, context) == NATS_OK else { return }
        defer { natsMsgList_Destroy(&list) }
        logger.warning(
            "publish acknowledgements overdue; resending pending messages with their ids",
            metadata: ["count": "\(list.Count)"])
        for i in 0..<Int(list.Count) {
            guard let msg = list.Msgs[i] else { continue }
            let key = Int(bitPattern: UnsafeRawPointer(msg))
            guard let entry = state.withLock({ $0.pending.removeValue(forKey: key) }) else { continue }
            list.Msgs[i] = nil  // ours again: natsMsgList_Destroy must not free it
            fail(
                msg, entry, status: NATS_TIMEOUT, jsCode: jsErrCode(0),
                detail: "no acknowledgement within \(requestTimeout)")
        }
    }

    // MARK: Internals

    /// Registers and sends `msg`. On an immediate failure the entry is resolved (or retried).
    /// The caller holds a window slot for it.
    private func send(_ msg: OpaquePointer, _ entry: Entry) {
        let key = Int(bitPattern: UnsafeRawPointer(msg))
        var entry = entry
        entry.sentAt = .now
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
            window.release()
            entry.collector.resolve(
                entry.index,
                .success(PublishAck(sequence: ack.pointee.Sequence, stream: stream, duplicate: ack.pointee.Duplicate)))
            return
        }
        let status = failure?.pointee.Err ?? NATS_ERR
        let code = failure?.pointee.ErrCode ?? jsErrCode(0)
        let detail = failure?.pointee.ErrText.map { String(cString: $0) } ?? ""
        fail(msg, entry, status: status, jsCode: code, detail: detail)
    }

    /// Retries a retryable failure before its deadline, else resolves the entry with the error.
    private func fail(_ msg: OpaquePointer, _ entry: Entry, status: natsStatus, jsCode: jsErrCode, detail: String) {
        let now = ContinuousClock.now
        if isRetryablePublishFailure(status, jsCode), now < entry.deadline {
            var next = entry
            next.attempts += 1
            let backoff = min(Duration.milliseconds(25) * (1 << min(next.attempts - 2, 6)), .seconds(1))
            let delay = min(backoff, entry.deadline - now)
            retries.add(1, ordering: .relaxed)
            logger.debug(
                "retrying publish",
                metadata: [
                    "subject": "\(entry.subject)", "messageID": "\(entry.messageID)", "attempt": "\(next.attempts)",
                    "status": "\(detail)",
                ]
            )
            let address = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(msg)))
            Task.detached { [self] in
                try? await Task.sleep(for: delay)
                self.send(OpaquePointer(bitPattern: address)!, next)
            }
            return
        }
        natsMsg_Destroy(msg)
        window.release()
        let error = CourierError.nats(
            status,
            "publish of '\(entry.messageID)' to '\(entry.subject)' failed after \(entry.attempts) attempt(s)",
            input: entry.subject,
            jsCode: jsCode,
            detail: detail
        )
        entry.collector.resolve(entry.index, .failure(error))
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
