#if NATS
internal import CNATS
import CourierCore
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Atomic batch publishing (nats-server 2.12+, a stream with `allow_atomic`): up to 1 000
/// messages go out as plain core publishes carrying `Nats-Batch-Id` and `Nats-Batch-Sequence`,
/// the last with `Nats-Batch-Commit: 1` and a reply subject. The server stores the whole batch
/// or none of it and answers the commit with one acknowledgement (the last sequence and the
/// count), so a batch costs one acknowledgement instead of one per message.
///
/// Every message keeps its `Nats-Msg-Id`. A batch that fails or whose commit is not answered
/// in time was stored whole or not at all, so its messages are handed to the per-message
/// publisher (``AsyncPublisher``), whose dedupe ids turn the ones already stored into
/// duplicates with their real sequences: the outcome is exact either way. That resend goes one
/// message at a time: it happens while a leader changes, when pipelined messages could be
/// stored out of order. The same holds when
/// the server refuses a batch that holds an id it already stored (error 10201), when it is too
/// old to know batches (its acknowledgement has no batch), or when the connection is down.
///
/// Replies arrive on one wildcard subscription (`<inbox>.*`), the commit's token in the last
/// subject token; a watchdog fails commits not answered within the request timeout.
///
/// `@unchecked Sendable`: `subscription` is set once by ``start()`` before any publish and
/// cleared only by ``stop()`` when the connection closes; every other mutable state is behind
/// `slots` or the atomics.
final class AtomicBatchPublisher: @unchecked Sendable {
    /// The server's default limit of messages per batch.
    static let maxMessages = 1000
    /// Bytes per batch: a batch is proposed to the stream's replicas as one unit.
    static let maxBytes = 4 << 20
    /// What became of a batch's commit.
    enum Reply: Sendable {
        /// Stored whole: the last message's sequence and the count.
        case stored(lastSequence: UInt64, count: Int, stream: String)
        /// Refused or not answered; nothing of it may be assumed stored or lost.
        case failed(CourierError)
    }

    private enum Slot {
        case pending(deadline: ContinuousClock.Instant)
        case waiting(CheckedContinuation<Reply, Never>, deadline: ContinuousClock.Instant)
        case arrived(Reply)
    }

    private struct State {
        var slots: [UInt64: Slot] = [:]
        var watchdogRunning = false
    }

    private let connection: OpaquePointer
    private let logger: Logger
    private let requestTimeout: Duration
    private let state = Mutex(State())
    private let tokens = Atomic<UInt64>(0)
    /// A prefix unique to this publisher: batch ids are `<nonce>.<token>`.
    private let nonce: String
    private let inbox: String
    private nonisolated(unsafe) var subscription: OpaquePointer?
    /// Batches in flight on the connection: the server allows 50 per stream.
    let window = AsyncWindow(size: 16)
    /// Batches stored whole.
    let commits = Atomic<UInt64>(0)
    /// Batches handed to the per-message publisher.
    let fallbacks = Atomic<UInt64>(0)

    init(connection: OpaquePointer, requestTimeout: Duration, logger: Logger) {
        self.connection = connection
        self.requestTimeout = requestTimeout
        self.logger = logger
        var random = SystemRandomNumberGenerator()
        nonce = String(random.next() as UInt64, radix: 16)
        inbox = ReplyInbox.make(fallbackName: "courier-batch")
    }

    /// Subscribes to the reply subjects (blocking).
    func start() throws {
        let sub = try ReplyInbox.subscribe(
            self, connection: connection, inbox: inbox, handler: batchReplyHandler,
            what: "batch publish replies")
        subscription = sub
    }

    /// Stops the reply subscription (blocking); called before the connection is destroyed.
    func stop() {
        guard let sub = subscription else { return }
        subscription = nil
        ReplyInbox.unsubscribe(sub)
    }

    // MARK: Publishing

    /// Publishes `messages` in atomic batches, in order, and returns each one's result in order.
    /// The batches of a call go one at a time, so a later one is never stored ahead of an
    /// earlier one that failed (calls of other tasks, such as other ingest shards, overlap). The
    /// first batch not stored whole, and every batch after it, goes to `perMessage` (the ordered
    /// per-message publisher) in one call.
    func publish(
        _ messages: [OutgoingMessage],
        timeout: Duration,
        perMessage: ([OutgoingMessage], Duration) async -> [Result<PublishAck, CourierError>]
    ) async -> [Result<PublishAck, CourierError>] {
        let deadline = ContinuousClock.now + timeout
        let chunks = Self.chunks(of: messages)
        var results = [Result<PublishAck, CourierError>?](repeating: nil, count: messages.count)
        var stored = 0
        while stored < chunks.count {
            let range = chunks[stored]
            await window.acquire()
            let reply = await self.reply(send(messages[range]))
            window.release()
            guard case .stored(let last, let count, let stream) = reply, count == range.count else {
                if case .failed(let error) = reply {
                    logger.debug(
                        "an atomic batch was not stored; publishing it per message",
                        metadata: ["count": "\(range.count)", "error": "\(error)"])
                } else {
                    logger.warning(
                        "an atomic batch was acknowledged with another count; publishing it per message",
                        metadata: ["sent": "\(range.count)"])
                }
                break
            }
            commits.add(1, ordering: .relaxed)
            let first = last &- UInt64(count - 1)
            for (offset, index) in range.enumerated() {
                results[index] = .success(
                    PublishAck(sequence: first + UInt64(offset), stream: stream, duplicate: false))
            }
            stored += 1
        }
        if stored < chunks.count {
            fallbacks.add(UInt64(chunks.count - stored), ordering: .relaxed)
            let rest = chunks[stored].lowerBound..<messages.count
            let resent = await perMessage(Array(messages[rest]), max(deadline - .now, .milliseconds(1)))
            for (position, index) in rest.enumerated() { results[index] = resent[position] }
        }
        return results.map { $0! }
    }

    /// Index ranges of at most ``maxMessages`` messages and ``maxBytes`` bytes each, of even
    /// counts (1 024 messages are two batches of 512, not 1 000 and 24).
    static func chunks(of messages: [OutgoingMessage]) -> [Range<Int>] {
        let parts = (messages.count + maxMessages - 1) / maxMessages
        let target = parts > 0 ? (messages.count + parts - 1) / parts : 0
        var ranges: [Range<Int>] = []
        var start = 0
        var bytes = 0
        for (index, message) in messages.enumerated() {
            let size = message.payload.count + message.subject.utf8.count + 128
            if index > start, index - start == target || bytes + size > maxBytes {
                ranges.append(start..<index)
                start = index
                bytes = 0
            }
            bytes += size
        }
        if start < messages.count { ranges.append(start..<messages.count) }
        return ranges
    }

    /// Sends one batch and returns the token its commit's reply will carry. A batch that cannot
    /// be sent (not connected, a message cannot be made) is failed at once under that token.
    private func send(_ batch: ArraySlice<OutgoingMessage>) -> UInt64 {
        let token = tokens.add(1, ordering: .relaxed).newValue
        let startWatchdog = state.withLock { state -> Bool in
            state.slots[token] = .pending(deadline: .now + requestTimeout)
            guard !state.watchdogRunning else { return false }
            state.watchdogRunning = true
            return true
        }
        if startWatchdog { startWatchdogTask() }
        guard natsConnection_Status(connection) == NATS_CONN_STATUS_CONNECTED else {
            resolve(token, .failed(CourierError(.connectionFailed, "not connected", isRetryable: true)))
            return token
        }
        let batchID = "\(nonce).\(token)"
        let reply = "\(inbox).\(token)"
        var sequence = 0
        var scratch: [UInt8] = []
        for message in batch {
            sequence += 1
            let isLast = sequence == batch.count
            do {
                try sendOne(
                    message, batchID: batchID, sequence: sequence, reply: isLast ? reply : nil, scratch: &scratch)
            } catch {
                // What was sent is an incomplete batch: the server abandons it.
                resolve(token, .failed(error as? CourierError ?? CourierError(.providerError, "\(error)")))
                return token
            }
        }
        return token
    }

    /// Sends one message of a batch with its batch headers; the last one carries the commit
    /// header and the reply subject.
    private func sendOne(
        _ message: OutgoingMessage, batchID: String, sequence: Int, reply: String?, scratch: inout [UInt8]
    ) throws {
        let position = (id: batchID, sequence: sequence, commits: reply != nil)
        let msg =
            if let reply {
                try reply.withCString {
                    try makeNATSMessage(message, reply: $0, atomicBatch: position, scratch: &scratch)
                }
            } else {
                try makeNATSMessage(message, reply: nil, atomicBatch: position, scratch: &scratch)
            }
        defer { natsMsg_Destroy(msg) }
        let status = natsConnection_PublishMsg(connection, msg)
        guard status == NATS_OK else {
            throw CourierError.nats(
                status, "cannot send batch message '\(message.messageID)'", input: message.subject,
                detail: natsLastErrorText())
        }
    }

    /// Waits for the reply to the batch sent under `token` (or its failure).
    private func reply(_ token: UInt64) async -> Reply {
        await withCheckedContinuation { (continuation: CheckedContinuation<Reply, Never>) in
            let arrived = state.withLock { state -> Reply? in
                switch state.slots[token] {
                case .arrived(let reply):
                    state.slots[token] = nil
                    return reply
                case .pending(let deadline):
                    state.slots[token] = .waiting(continuation, deadline: deadline)
                    return nil
                case .waiting, nil:
                    return .failed(CourierError(.providerError, "batch reply slot lost", isRetryable: true))
                }
            }
            if let arrived { continuation.resume(returning: arrived) }
        }
    }

    /// Settles the batch of `token`; a reply for a batch already settled is ignored.
    private func resolve(_ token: UInt64, _ reply: Reply) {
        let waiter = state.withLock { state -> CheckedContinuation<Reply, Never>? in
            switch state.slots[token] {
            case .pending:
                state.slots[token] = .arrived(reply)
                return nil
            case .waiting(let continuation, _):
                state.slots[token] = nil
                return continuation
            case .arrived, nil:
                return nil
            }
        }
        waiter?.resume(returning: reply)
    }

    private func startWatchdogTask() {
        Task.detached { [self] in
            while true {
                try? await Task.sleep(for: min(requestTimeout / 4, .milliseconds(250)))
                let now = ContinuousClock.now
                let (overdue, done) = state.withLock { state -> ([UInt64], Bool) in
                    var overdue: [UInt64] = []
                    var open = 0
                    for (token, slot) in state.slots {
                        switch slot {
                        case .pending(let deadline), .waiting(_, let deadline):
                            if deadline < now { overdue.append(token) } else { open += 1 }
                        case .arrived:
                            open += 1
                        }
                    }
                    if overdue.isEmpty && open == 0 {
                        state.watchdogRunning = false
                        return ([], true)
                    }
                    return (overdue, false)
                }
                for token in overdue {
                    resolve(
                        token,
                        .failed(
                            CourierError(
                                .timeout, "no acknowledgement of an atomic batch within \(requestTimeout)",
                                isRetryable: true)))
                }
                if done { return }
            }
        }
    }

    /// Called by the reply subscription on a cnats thread.
    fileprivate func handleReply(_ msg: OpaquePointer) {
        defer { natsMsg_Destroy(msg) }
        guard let subject = natsMsg_GetSubject(msg) else { return }
        let text = String(cString: subject)
        guard let dot = text.lastIndex(of: "."), let token = UInt64(text[text.index(after: dot)...]) else { return }
        if natsMsg_IsNoResponders(msg) {
            resolve(token, .failed(CourierError(.connectionFailed, "no responders for the stream", isRetryable: true)))
            return
        }
        let length = Int(natsMsg_GetDataLength(msg))
        guard length > 0, let data = natsMsg_GetData(msg) else { return }  // a zero-byte progress ack
        let bytes = UnsafeRawBufferPointer(start: data, count: length)
        guard let json = try? JSONValue(parsing: bytes) else {
            resolve(token, .failed(CourierError(.providerError, "unreadable batch acknowledgement", isRetryable: true)))
            return
        }
        if let error = json["error"] {
            let code = error["err_code"]?.intValue ?? 0
            let description = error["description"]?.stringValue ?? "refused"
            resolve(
                token,
                .failed(CourierError(.providerError, "batch refused: \(description) (JetStream error \(code))")))
            return
        }
        guard json["batch"] != nil, let count = json["count"]?.intValue, let sequence = json["seq"]?.intValue else {
            // A server that does not know batches stored each message and acknowledged the
            // last: the per-message resend reports the others as duplicates.
            resolve(token, .failed(CourierError(.providerError, "the server does not publish atomic batches")))
            return
        }
        resolve(
            token,
            .stored(
                lastSequence: UInt64(sequence), count: Int(count), stream: json["stream"]?.stringValue ?? ""))
    }
}

/// Runs on the reply subscription's cnats thread.
private let batchReplyHandler: natsMsgHandler = { _, _, msg, closure in
    guard let msg, let closure else { return }
    Unmanaged<AtomicBatchPublisher>.fromOpaque(closure).takeUnretainedValue().handleReply(msg)
}

#endif
