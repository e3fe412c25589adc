#if NATS
internal import CNATS
import CourierCore
import Logging

/// What a consumer should look like.
struct ConsumerSettings: Sendable {
    let durable: String?
    let filter: String?
    let options: SubscribeOptions
    let policy: DeliverPolicy
    let stream: String

    /// The deliver subject of a durable push consumer: stable, so any process can bind to it.
    var deliverSubject: String? { durable.map { "_COURIER.deliver.\(stream).\($0)" } }

    /// Fills `config` (initialised) with these settings; strings live in `arena`.
    func fill(_ config: inout jsConsumerConfig, arena: CStringArena) {
        config.Durable = arena.optional(durable)
        config.FilterSubject = arena.optional(filter)
        config.AckPolicy = js_AckExplicit
        config.AckWait = options.ackWait.nanoseconds
        // Courier dead-letters after `maxDeliver` deliveries itself; the server's bound leaves
        // room for retrying a failed dead-letter hand-off, and then stops: redelivery is always
        // bounded, also when the consumer process is gone.
        config.MaxDeliver = Int64(options.deliveryLimit)
        config.MaxAckPending = Int64(options.maxAckPending)
        config.ReplayPolicy = js_ReplayInstant
        if !options.backoff.isEmpty {
            config.BackOff = arena.int64s(options.backoff.map(\.nanoseconds))
            config.BackOffLen = Int32(options.backoff.count)
        }
        if let durable {
            config.DeliverSubject = arena.optional(deliverSubject)
            config.DeliverGroup = arena.optional(durable)
        }
        switch policy.kind {
        case .all: config.DeliverPolicy = js_DeliverAll
        case .last: config.DeliverPolicy = js_DeliverLast
        case .new: config.DeliverPolicy = js_DeliverNew
        case .lastPerSubject: config.DeliverPolicy = js_DeliverLastPerSubject
        case .startSequence(let sequence):
            config.DeliverPolicy = js_DeliverByStartSequence
            config.OptStartSeq = max(1, sequence)
        case .startTime(let nanoseconds):
            config.DeliverPolicy = js_DeliverByStartTime
            config.OptStartTime = nanoseconds
        }
    }
}

/// Stream facts for ``JetStreamProvider/info()``.
struct StreamState: Sendable {
    var messages: UInt64
    var bytes: UInt64
    var firstSequence: UInt64
    var lastSequence: UInt64
    var consumers: Int
    var storage: String
    var replicas: Int
    /// Leader and followers of a clustered stream.
    var replicaSet: ProviderInfo.ReplicaSet?
}

/// A durable consumer's progress as the server reports it.
struct ConsumerProgress: Sendable {
    /// Stored events the consumer has not delivered yet.
    var pending: UInt64
    /// Delivered events awaiting their acknowledgement.
    var ackPending: Int
    var maxAckPending: Int
    /// The consumer sequence of its last delivery.
    var delivered: UInt64
    /// Whether the server sees a subscription on the deliver subject.
    var pushBound: Bool
}

extension JetStreamProvider {
    var js: OpaquePointer { connection.context }

    // MARK: Stream

    /// Current counters of `stream`, the event stream by default (blocking).
    func streamState(_ stream: String? = nil) throws -> StreamState {
        let stream = stream ?? configuration.stream
        var info: UnsafeMutablePointer<jsStreamInfo>?
        var jerr = jsErrCode(0)
        let status = js_GetStreamInfo(&info, js, stream, nil, &jerr)
        guard status == NATS_OK, let info else {
            throw CourierError.nats(
                status, "cannot read stream \(stream)", input: stream, jsCode: jerr, detail: natsLastErrorText())
        }
        defer { jsStreamInfo_Destroy(info) }
        let state = info.pointee.State
        return StreamState(
            messages: state.Msgs,
            bytes: state.Bytes,
            firstSequence: state.FirstSeq,
            lastSequence: state.LastSeq,
            consumers: Int(state.Consumers),
            storage: info.pointee.Config.pointee.Storage == js_FileStorage ? "file" : "memory",
            replicas: Int(info.pointee.Config.pointee.Replicas),
            replicaSet: info.pointee.Cluster.map { Self.replicaSet($0.pointee) }
        )
    }

    /// A stream's cluster facts as cnats read them.
    private static func replicaSet(_ cluster: jsClusterInfo) -> ProviderInfo.ReplicaSet {
        var followers: [ProviderInfo.ReplicaSet.Follower] = []
        if let replicas = cluster.Replicas {
            for index in 0..<Int(max(0, cluster.ReplicasLen)) {
                guard let peer = replicas[index]?.pointee else { continue }
                followers.append(
                    .init(
                        name: peer.Name.map { String(cString: $0) } ?? "?", current: peer.Current,
                        offline: peer.Offline, lag: peer.Lag, lastSeenNanoseconds: peer.Active))
            }
        }
        return ProviderInfo.ReplicaSet(
            cluster: cluster.Name.map { String(cString: $0) },
            leader: cluster.Leader.map { String(cString: $0) },
            followers: followers)
    }

    // MARK: Start times

    /// The first stored sequence at or after `unixNanoseconds` (blocking), found by binary search
    /// over stored message times. The server's own by-start-time lookup in nats-server 2.9 can
    /// miss under load (the consumer then starts after the last message), so Courier resolves the
    /// time itself and starts the consumer by sequence.
    func sequence(atOrAfter unixNanoseconds: Int64) throws -> UInt64 {
        let stream = try streamState()
        guard stream.messages > 0 else { return stream.lastSequence + 1 }
        var low = stream.firstSequence
        var high = stream.lastSequence + 1
        while low < high {
            let mid = low + (high - low) / 2
            // Skip sequences that were deleted.
            var probe = mid
            var time: Int64?
            while probe < high {
                time = try storedTime(probe)
                if time != nil { break }
                probe += 1
            }
            guard let time else {
                high = mid
                continue
            }
            if time < unixNanoseconds { low = probe + 1 } else { high = probe }
        }
        return low
    }

    /// The stored time of `sequence`, `nil` when there is no such message (blocking).
    private func storedTime(_ sequence: UInt64) throws -> Int64? {
        var msg: OpaquePointer?
        var jerr = jsErrCode(0)
        let status = js_GetMsg(&msg, js, configuration.stream, sequence, nil, &jerr)
        if status == NATS_OK, let msg {
            defer { natsMsg_Destroy(msg) }
            return natsMsg_GetTime(msg)
        }
        if status == NATS_NOT_FOUND || jerr.rawValue == 10037 { return nil }  // 10037: no message found
        throw CourierError.nats(
            status, "cannot read stored message \(sequence)", input: String(sequence), jsCode: jerr,
            detail: natsLastErrorText())
    }

    // MARK: Consumers

    /// Creates the durable consumer, or updates an existing one (blocking). Binding to a
    /// consumer with another filter is an error.
    func ensureDurable(_ settings: ConsumerSettings, requested filter: String) throws {
        guard let name = settings.durable else { return }
        var info: UnsafeMutablePointer<jsConsumerInfo>?
        var jerr = jsErrCode(0)
        let status = js_GetConsumerInfo(&info, js, configuration.stream, name, nil, &jerr)
        let arena = CStringArena()
        var config = jsConsumerConfig()
        jsConsumerConfig_Init(&config)
        settings.fill(&config, arena: arena)
        if status == NATS_OK, let info {
            defer { jsConsumerInfo_Destroy(info) }
            let existing = info.pointee.Config.pointee
            let existingFilter = existing.FilterSubject.map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
            guard existingFilter == settings.filter else {
                throw CourierError(
                    .invalidConfiguration,
                    "durable consumer '\(name)' exists with filter '\(existingFilter ?? subjectPrefix + ".>")', not '\(filter)'",
                    input: name
                )
            }
            guard existing.DeliverSubject != nil else {
                throw CourierError(
                    .invalidConfiguration,
                    "durable consumer '\(name)' is a pull consumer; Courier binds push consumers (delete it or use another name)",
                    input: name
                )
            }
            // Keep the position settings (they cannot change) and the deliver subject it has.
            config.DeliverPolicy = existing.DeliverPolicy
            config.OptStartSeq = existing.OptStartSeq
            config.OptStartTime = existing.OptStartTime
            config.DeliverSubject = existing.DeliverSubject
            config.DeliverGroup = existing.DeliverGroup
            let unchanged =
                existing.AckWait == config.AckWait && existing.MaxAckPending == config.MaxAckPending
                && existing.MaxDeliver == config.MaxDeliver && existing.BackOffLen == config.BackOffLen
                && (0..<Int(config.BackOffLen)).allSatisfy { existing.BackOff[$0] == config.BackOff[$0] }
            if unchanged { return }
            var updated: UnsafeMutablePointer<jsConsumerInfo>?
            let updateStatus = js_UpdateConsumer(&updated, js, configuration.stream, &config, nil, &jerr)
            if let updated { jsConsumerInfo_Destroy(updated) }
            guard updateStatus == NATS_OK else {
                throw CourierError.nats(
                    updateStatus, "cannot update durable consumer '\(name)'", input: name, jsCode: jerr,
                    detail: natsLastErrorText())
            }
            return
        }
        guard jerr == JSConsumerNotFoundErr || status == NATS_NOT_FOUND else {
            throw CourierError.nats(
                status, "cannot look up consumer '\(name)'", input: name, jsCode: jerr, detail: natsLastErrorText())
        }
        var created: UnsafeMutablePointer<jsConsumerInfo>?
        let addStatus = js_AddConsumer(&created, js, configuration.stream, &config, nil, &jerr)
        if let created { jsConsumerInfo_Destroy(created) }
        guard addStatus == NATS_OK else {
            throw CourierError.nats(
                addStatus, "cannot create durable consumer '\(name)'", input: name, jsCode: jerr,
                detail: natsLastErrorText())
        }
    }

    /// What the server reports of durable consumer `name` (blocking), for the stall watch.
    func consumerProgress(_ name: String) throws -> ConsumerProgress {
        var info: UnsafeMutablePointer<jsConsumerInfo>?
        var jerr = jsErrCode(0)
        let status = js_GetConsumerInfo(&info, js, configuration.stream, name, nil, &jerr)
        guard status == NATS_OK, let info else {
            throw CourierError.nats(
                status, "cannot look up consumer '\(name)'", input: name, jsCode: jerr, detail: natsLastErrorText())
        }
        defer { jsConsumerInfo_Destroy(info) }
        return ConsumerProgress(
            pending: info.pointee.NumPending,
            ackPending: Int(info.pointee.NumAckPending),
            maxAckPending: Int(info.pointee.Config?.pointee.MaxAckPending ?? 0),
            delivered: info.pointee.Delivered.Consumer,
            pushBound: info.pointee.PushBound)
    }

    /// Subscribes a push handler (blocking): bound to the durable consumer, or creating an
    /// ephemeral one that cnats deletes when the subscription ends.
    func subscribeNative(_ settings: ConsumerSettings, inbox: DeliveryInbox) throws -> SubscriptionHandle {
        let arena = CStringArena()
        var options = jsSubOptions()
        jsSubOptions_Init(&options)
        options.Stream = arena.c(configuration.stream)
        options.ManualAck = true
        let subject: UnsafePointer<CChar>?
        if let durable = settings.durable {
            options.Consumer = arena.optional(durable)
            options.Queue = arena.optional(durable)
            subject = arena.optional(settings.filter)
        } else {
            settings.fill(&options.Config, arena: arena)
            options.Config.FilterSubject = nil
            subject = arena.c(settings.filter ?? subjectPrefix + ".>")
        }
        let binding = inbox.newBinding()
        let closure = Unmanaged.passRetained(binding).toOpaque()
        var sub: OpaquePointer?
        var jerr = jsErrCode(0)
        let status = js_Subscribe(&sub, js, subject, deliveryHandler, closure, nil, &options, &jerr)
        guard status == NATS_OK, let sub else {
            Unmanaged<InboxBinding>.fromOpaque(closure).release()
            throw CourierError.nats(
                status,
                "cannot subscribe to \(settings.durable.map { "durable consumer '\($0)'" } ?? "'\(settings.filter ?? subjectPrefix + ".>")'")",
                input: settings.durable ?? settings.filter,
                jsCode: jerr,
                detail: natsLastErrorText()
            )
        }
        let handle = SubscriptionHandle(sub)
        inbox.makeCurrent(binding)
        if natsSubscription_SetOnCompleteCB(sub, deliveryComplete, closure) == NATS_OK {
            binding.retain(handle)
        } else {
            // Already closed: no handler call can be pending any more.
            Unmanaged<InboxBinding>.fromOpaque(closure).release()
        }
        _ = natsSubscription_SetPendingLimits(sub, -1, -1)
        return handle
    }

    // MARK: History

    /// How many stored messages matching `filter` start at `sequence` or later (blocking): an
    /// ephemeral consumer is created for the count and deleted again.
    private func matching(stream: String, from sequence: UInt64, filter: String?) throws -> UInt64 {
        let arena = CStringArena()
        var config = jsConsumerConfig()
        jsConsumerConfig_Init(&config)
        config.AckPolicy = js_AckNone
        config.DeliverPolicy = js_DeliverByStartSequence
        config.OptStartSeq = max(1, sequence)
        config.FilterSubject = arena.optional(filter)
        config.DeliverSubject = arena.c("_COURIER.probe.\(stream).\(UInt64.random(in: 0...UInt64.max))")
        config.InactiveThreshold = 5_000_000_000
        var info: UnsafeMutablePointer<jsConsumerInfo>?
        var jerr = jsErrCode(0)
        let status = js_AddConsumer(&info, js, stream, &config, nil, &jerr)
        guard status == NATS_OK, let info else {
            throw CourierError.nats(
                status, "cannot count stored events", input: filter, jsCode: jerr, detail: natsLastErrorText())
        }
        let pending = info.pointee.NumPending
        if let name = info.pointee.Name { _ = js_DeleteConsumer(js, stream, name, nil, &jerr) }
        jsConsumerInfo_Destroy(info)
        return pending
    }

    /// The newest `limit` events matching `filter` in `stream` (the event stream by default),
    /// oldest first (blocking).
    func readHistory(stream name: String? = nil, filter: String?, limit: Int) throws -> [Event] {
        try readHistoryWithSequences(stream: name, filter: filter, limit: limit).map(\.event)
    }

    /// As ``readHistory(stream:filter:limit:)``, with each event's stream sequence.
    func readHistoryWithSequences(stream name: String? = nil, filter: String?, limit: Int) throws
        -> [(sequence: UInt64, event: Event)]
    {
        let name = name ?? configuration.stream
        let stream = try streamState(name)
        guard stream.messages > 0 else { return [] }
        var start = stream.firstSequence
        let total = try matching(stream: name, from: start, filter: filter)
        guard total > 0 else { return [] }
        var expected = total
        if total > UInt64(limit) {
            // Binary search for the latest start sequence that still has `limit` matches after it.
            var low = stream.firstSequence
            var high = stream.lastSequence
            while low < high {
                let mid = low + (high - low + 1) / 2
                if try matching(stream: name, from: mid, filter: filter) >= UInt64(limit) {
                    low = mid
                } else {
                    high = mid - 1
                }
            }
            start = low
            expected = UInt64(limit)
        }
        return try readOrdered(stream: name, from: start, filter: filter, count: Int(expected))
    }

    /// Reads `count` matching events from `sequence` with an ordered consumer (blocking).
    private func readOrdered(stream: String, from sequence: UInt64, filter: String?, count: Int) throws
        -> [(sequence: UInt64, event: Event)]
    {
        guard count > 0 else { return [] }
        var events: [(sequence: UInt64, event: Event)] = []
        events.reserveCapacity(count)
        let subject = filter ?? subjectPrefix + ".>"
        try readOrderedMessages(
            stream: stream, from: sequence, subject: subject, failure: "cannot read history of '\(subject)'",
            input: subject
        ) { msg, metadata in
            let length = Int(natsMsg_GetDataLength(msg))
            let bytes = UnsafeRawBufferPointer(start: natsMsg_GetData(msg), count: length).bindMemory(to: UInt8.self)
            if let event = try? Event(wireJSON: bytes) {
                events.append((metadata?.streamSequence ?? 0, event))
            } else {
                configuration.logger.warning(
                    "history skipped an undecodable message",
                    metadata: ["subject": "\(String(cString: natsMsg_GetSubject(msg)))"])
            }
            return events.count < count
        }
        return events
    }

    /// Hands the messages on `subject` from stream sequence `sequence` on, read with an ordered
    /// consumer (blocking), to `body` with their JetStream metadata, until `body` returns `false`,
    /// or the last stored message was read. Call it only where messages are known to be stored
    /// from `sequence` on: a read that stalls before the last one (a leader change, a frozen
    /// server, or the rest removed by retention meanwhile) throws a retryable `timeout`, so a
    /// short read is never passed off as the whole. Errors say `failure` and name `input`.
    func readOrderedMessages(
        stream: String? = nil,
        from sequence: UInt64,
        subject: String,
        failure: String,
        input: String,
        _ body: (_ msg: OpaquePointer, _ metadata: AckMetadata?) throws -> Bool
    ) throws {
        let arena = CStringArena()
        var options = jsSubOptions()
        jsSubOptions_Init(&options)
        options.Stream = arena.c(stream ?? configuration.stream)
        options.Ordered = true
        options.Config.DeliverPolicy = js_DeliverByStartSequence
        options.Config.OptStartSeq = max(1, sequence)
        var sub: OpaquePointer?
        var jerr = jsErrCode(0)
        let status = js_SubscribeSync(&sub, js, subject, nil, &options, &jerr)
        guard status == NATS_OK, let sub else {
            throw CourierError.nats(status, failure, input: input, jsCode: jerr, detail: natsLastErrorText())
        }
        defer {
            natsSubscription_Unsubscribe(sub)
            natsSubscription_Destroy(sub)
        }
        let wait = max(1, configuration.requestTimeout.milliseconds)
        var progress = OrderedReadProgress()
        while true {
            var msg: OpaquePointer?
            let next = natsSubscription_NextMsg(&msg, sub, wait)
            guard next == NATS_OK, let msg else {
                // Nothing matched, or everything was read: done. Messages still pending (a
                // leader change paused the read): a retryable error, never a silently short read.
                // (Callers read only where messages are known to be stored: nothing at all
                // arriving is a stall too.)
                if next == NATS_TIMEOUT, progress.isCompleteWhenQuiet { return }
                var error = CourierError.nats(
                    next, failure + " (stalled with \(progress.left) messages still to read)", input: input,
                    detail: natsLastErrorText())
                if next == NATS_TIMEOUT { error.isRetryable = true }
                throw error
            }
            defer { natsMsg_Destroy(msg) }
            let metadata = natsMsg_GetReply(msg).flatMap { AckMetadata(reply: $0) }
            let complete = metadata.map { progress.record(pending: $0.pending) } ?? false
            guard try body(msg, metadata), !complete else { return }
        }
    }
}

extension JetStreamProvider {
    /// Deletes the durable consumer `name` (blocking); `requested` is the name as the caller gave it.
    func deleteConsumer(_ name: String, requested: String) throws {
        var jerr = jsErrCode(0)
        let status = js_DeleteConsumer(js, configuration.stream, name, nil, &jerr)
        guard status == NATS_OK else {
            throw CourierError.nats(
                status, "cannot delete consumer '\(requested)' on stream \(configuration.stream)", input: requested,
                jsCode: jerr, detail: natsLastErrorText())
        }
    }

    /// Deletes the message at `sequence` of `stream` (blocking).
    func deleteMessage(stream: String, sequence: UInt64) throws {
        var jerr = jsErrCode(0)
        let status = js_DeleteMsg(js, stream, sequence, nil, &jerr)
        guard status == NATS_OK else {
            throw CourierError.nats(
                status, "cannot delete message \(sequence) of stream \(stream)", input: String(sequence), jsCode: jerr,
                detail: natsLastErrorText())
        }
    }

    /// Reads up to `limit` stored messages from stream sequence `sequence` on, with an ordered
    /// consumer (blocking).
    func readStored(from sequence: UInt64, limit: Int) throws -> [StoredMessage] {
        let stream = try streamState()
        guard stream.messages > 0, sequence <= stream.lastSequence, limit > 0 else { return [] }
        var messages: [StoredMessage] = []
        messages.reserveCapacity(min(limit, 4096))
        try readOrderedMessages(
            from: sequence, subject: subjectPrefix + ".>", failure: "cannot read stream \(configuration.stream)",
            input: configuration.stream
        ) { msg, metadata in
            guard let metadata else { return true }
            var value: UnsafePointer<CChar>?
            let messageID =
                natsMsgHeader_Get(msg, "Nats-Msg-Id", &value) == NATS_OK ? value.map { String(cString: $0) } : nil
            let length = Int(natsMsg_GetDataLength(msg))
            let payload = Array(
                UnsafeRawBufferPointer(start: natsMsg_GetData(msg), count: length).bindMemory(to: UInt8.self))
            messages.append(
                StoredMessage(
                    sequence: metadata.streamSequence,
                    subject: String(cString: natsMsg_GetSubject(msg)),
                    messageID: messageID,
                    payload: payload,
                    timestamp: metadata.timestamp
                )
            )
            return messages.count < limit
        }
        return messages
    }
}
/// How far an ordered read has come, by what the server said with each message. A message
/// saying nothing is pending after it ends the read only once as many messages were read as the
/// server ever said the read would hold (each message's position plus what it said was pending
/// after it): nats-server 2.9.10 once said "nothing pending" one message early after leader
/// changes, and the read came back one short.
package struct OrderedReadProgress: Sendable {
    /// Messages read.
    package private(set) var read: UInt64 = 0
    /// The most the server said the read would hold.
    package private(set) var promised: UInt64 = 0
    /// What the last message said was pending after it.
    package private(set) var remaining: UInt64?

    package init() {}

    /// Records a message that says `pending` more follow it; returns whether the read is complete.
    package mutating func record(pending: UInt64) -> Bool {
        read += 1
        promised = max(promised, read + pending)
        remaining = pending
        return pending == 0 && read >= promised
    }

    /// Whether nothing more arriving means the read is complete (and not stalled).
    package var isCompleteWhenQuiet: Bool { remaining == 0 && read >= promised }

    /// Messages still to read, as far as the server said.
    package var left: UInt64 { max(remaining ?? 0, promised > read ? promised - read : 0) }
}
#endif
