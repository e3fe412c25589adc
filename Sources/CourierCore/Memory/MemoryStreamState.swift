import DequeModule

/// The whole state of a memory stream, guarded by the provider's mutex.
struct MemoryStreamState {
    let configuration: MemoryProvider.Configuration
    var log: Deque<StoredEvent> = []
    var lastSequence: UInt64 = 0
    var bytes = 0
    var dedupe: [MessageID: UInt64] = [:]
    var dedupeOrder: Deque<(id: MessageID, sequence: UInt64, at: Int64)> = []
    var batches: [WireBatch.Key: StoredBatch] = [:]
    var batchOrder: Deque<(key: WireBatch.Key, at: Int64)> = []
    var consumers: [String: MemoryConsumer] = [:]
    var nextEphemeral: UInt64 = 0
    var closed = false
    var eventsMissed: UInt64 = 0
    var deadLettered: UInt64 = 0
    var deadLetterFailures: UInt64 = 0
    /// Events whose every dead-letter hand-off failed: left stored, no longer delivered.
    var deadLettersAbandoned: UInt64 = 0
    var duplicates: UInt64 = 0

    init(configuration: MemoryProvider.Configuration) {
        self.configuration = configuration
    }

    var firstSequence: UInt64 { log.first?.sequence ?? lastSequence + 1 }

    func stored(_ sequence: UInt64) -> StoredEvent? {
        let first = firstSequence
        guard sequence >= first, sequence <= lastSequence else { return nil }
        return log[Int(sequence - first)]
    }

    func closedError() -> CourierError {
        CourierError(.shutdown, "memory stream \(configuration.stream) is shut down", input: configuration.stream)
    }

    // MARK: Append

    /// Appends one published event unless its message id was seen within the duplicate window.
    /// `body` is the event's stored form, built by the caller before it took the lock.
    mutating func append(
        _ body: StoredEvent.Body,
        subject: String,
        size: Int,
        messageID: MessageID,
        options: PublishOptions
    ) throws -> (PublishAck, [CheckedContinuation<Void, Never>]) {
        guard !closed else { throw closedError() }
        let now = WallClock.nowNanoseconds()
        pruneDedupe(now: now)
        // One hash lookup for the duplicate check and the insert: the id is entered with the
        // sequence it is about to get, and the entry put back as it was when it is a duplicate
        // or the append is refused.
        let sequence = lastSequence + 1
        if let original = dedupe.updateValue(sequence, forKey: messageID) {
            dedupe[messageID] = original
            duplicates += 1
            return (PublishAck(sequence: original, stream: configuration.stream, duplicate: true), [])
        }
        if let expected = options.expectedLastSequence, expected != lastSequence {
            dedupe[messageID] = nil
            throw CourierError(
                .wrongLastSequence,
                "expected last sequence \(expected) but stream \(configuration.stream) is at \(lastSequence)",
                input: String(expected)
            )
        }
        var wake: [CheckedContinuation<Void, Never>] = []
        let appended = append(subject: subject, body: body, size: size, now: now, wake: &wake)
        assert(appended == sequence)
        dedupeOrder.append((messageID, sequence, now))
        return (PublishAck(sequence: sequence, stream: configuration.stream), wake)
    }

    /// Appends the events of `batch` whose `subjects` entry is not nil (the ones that passed
    /// their checks), each unless its index of the batch was stored within the duplicate window.
    mutating func append(
        _ batch: WireBatch, subjects: [String?], now: Int64, wake: inout [CheckedContinuation<Void, Never>]
    ) -> [PublishAck?] {
        pruneDedupe(now: now)
        var record =
            batches.removeValue(forKey: batch.key)
            ?? StoredBatch(sequences: [UInt64](repeating: 0, count: batch.bytes.count), storedAt: now)
        if record.sequences.count < batch.bytes.count {
            record.sequences += repeatElement(0, count: batch.bytes.count - record.sequences.count)
        }
        var acks = [PublishAck?](repeating: nil, count: batch.bytes.count)
        var storedAny = false
        for index in batch.bytes.indices {
            guard let subject = subjects[index] else { continue }
            if record.sequences[index] != 0 {
                duplicates += 1
                acks[index] = PublishAck(
                    sequence: record.sequences[index], stream: configuration.stream, duplicate: true)
                continue
            }
            let bytes = batch.bytes[index]
            let sequence = append(subject: subject, body: .wire(bytes), size: bytes.count, now: now, wake: &wake)
            record.sequences[index] = sequence
            storedAny = true
            acks[index] = PublishAck(sequence: sequence, stream: configuration.stream)
        }
        if storedAny {
            record.storedAt = now
            batchOrder.append((batch.key, now))
        }
        batches[batch.key] = record
        return acks
    }

    /// Appends one event, collecting the waiters of consumers it matches into `wake`.
    private mutating func append(
        subject: String,
        body: StoredEvent.Body,
        size: Int,
        now: Int64,
        wake: inout [CheckedContinuation<Void, Never>]
    ) -> UInt64 {
        lastSequence += 1
        let sequence = lastSequence
        log.append(StoredEvent(sequence: sequence, subject: subject, body: body, size: size, storedAt: now))
        bytes += size
        enforceRetention(now: now)
        for consumer in consumers.values where !consumer.waiters.isEmpty && consumer.filter.matches(subject) {
            wake.append(contentsOf: consumer.takeWaiters())
        }
        return sequence
    }

    /// Forgets message ids older than the duplicate window, as JetStream does: an id is
    /// remembered for the whole window however many events pass meanwhile.
    private mutating func pruneDedupe(now: Int64) {
        let horizon = now - configuration.duplicateWindow.nanoseconds
        while let oldest = dedupeOrder.first, oldest.at < horizon {
            dedupeOrder.removeFirst()
            if dedupe[oldest.id] == oldest.sequence { dedupe[oldest.id] = nil }
        }
        while let oldest = batchOrder.first, oldest.at < horizon {
            batchOrder.removeFirst()
            if batches[oldest.key]?.storedAt == oldest.at { batches[oldest.key] = nil }
        }
    }

    private mutating func enforceRetention(now: Int64) {
        let ageHorizon = configuration.maxAge.map { now - $0.nanoseconds }
        while let oldest = log.first,
            log.count > configuration.maxEvents || bytes > configuration.maxBytes
                || (ageHorizon.map { oldest.storedAt < $0 } ?? false)
        {
            log.removeFirst()
            bytes -= oldest.size
            for consumer in consumers.values
            where consumer.nextSequence <= oldest.sequence && consumer.filter.matches(oldest.subject) {
                consumer.missed += 1
                eventsMissed += 1
            }
        }
    }

    // MARK: Consumers

    mutating func createConsumer(
        name: String?,
        filter: SubjectFilter,
        options: SubscribeOptions,
        policy: DeliverPolicy
    ) throws -> String {
        guard !closed else { throw closedError() }
        if let name, let existing = consumers[name] {
            guard existing.filter.pattern == filter.pattern else {
                throw CourierError(
                    .invalidConfiguration,
                    "durable consumer '\(name)' exists with filter '\(existing.filter.pattern)', not '\(filter.pattern)'",
                    input: name
                )
            }
            existing.options = options
            return name
        }
        let consumerName: String
        if let name {
            consumerName = name
        } else {
            nextEphemeral += 1
            consumerName = "_ephemeral_\(nextEphemeral)"
        }
        var seeded: Deque<UInt64> = []
        let start: UInt64
        switch policy.kind {
        case .all:
            start = firstSequence
        case .new:
            start = lastSequence + 1
        case .last:
            start = log.last(where: { filter.matches($0.subject) })?.sequence ?? lastSequence + 1
        case .lastPerSubject:
            var lastBySubject: [String: UInt64] = [:]
            for stored in log where filter.matches(stored.subject) {
                lastBySubject[stored.subject] = stored.sequence
            }
            seeded = Deque(lastBySubject.values.sorted())
            start = lastSequence + 1
        case .startSequence(let sequence):
            start = max(sequence, firstSequence)
        case .startTime(let unixNanoseconds):
            // Stored times only increase: binary search for the first at or after the start time.
            var low = 0
            var high = log.count
            while low < high {
                let mid = (low + high) / 2
                if log[mid].storedAt < unixNanoseconds { low = mid + 1 } else { high = mid }
            }
            start = low < log.count ? log[low].sequence : lastSequence + 1
        }
        consumers[consumerName] = MemoryConsumer(
            name: consumerName,
            durable: name != nil,
            filter: filter,
            options: options,
            start: start,
            seeded: seeded
        )
        return consumerName
    }

    // MARK: Delivery

    /// The next thing consumer `name` should do: hand out at most `limit` new deliveries (in
    /// stream order) or one due redelivery, dead-letter, wait, or stop.
    mutating func step(consumer name: String, now: ContinuousClock.Instant, limit: Int = 1) -> DeliveryStep {
        guard !closed, let consumer = consumers[name], !consumer.deleted else { return .closed }
        var letters: [DeadLetterJob] = []

        // 1. Due redeliveries (ack-wait expiries and naks), dead-lettering exhausted ones.
        while let top = consumer.due.min, top.dueAt <= now {
            guard var pending = consumer.pending[top.sequence], pending.version == top.version else {
                consumer.due.removeMin()
                continue
            }
            guard let stored = stored(top.sequence) else {
                consumer.due.removeMin()
                consumer.pending[top.sequence] = nil
                consumer.missed += 1
                eventsMissed += 1
                continue
            }
            if let reason = consumer.exhaustionReason(pending) {
                consumer.due.removeMin()
                consumer.pending[top.sequence] = nil
                letters.append(
                    DeadLetterJob(
                        consumer: name,
                        sequence: top.sequence,
                        letter: DeadLetterEvent(
                            event: stored.event,
                            reason: reason,
                            attempts: pending.deliveries,
                            consumer: consumer.durable ? name : nil,
                            streamSequence: top.sequence,
                            firstFailureAt: pending.firstDeliveredAt
                        ),
                        handOffFailures: pending.handOffFailures
                    )
                )
                continue
            }
            guard letters.isEmpty else { break }
            consumer.due.removeMin()
            pending.deliveries += 1
            pending.version &+= 1
            pending.dueAt = now + consumer.options.expiryWait(afterDelivery: pending.deliveries)
            consumer.schedule(top.sequence, pending)
            consumer.delivered += 1
            return .deliver([MemoryDelivery(stored: stored, deliveries: pending.deliveries, dueAt: pending.dueAt)])
        }
        if !letters.isEmpty { return .deadLetter(letters) }

        // 2. New events, within the ack-pending limit.
        var batch: [MemoryDelivery] = []
        while batch.count < limit, consumer.pending.count < consumer.options.maxAckPending,
            let stored = nextNew(for: consumer)
        {
            batch.append(deliverFirst(stored, to: consumer, now: now))
        }
        if !batch.isEmpty { return .deliver(batch) }
        return .wait(generation: consumer.generation, lastSequence: lastSequence, deadline: consumer.due.min?.dueAt)
    }

    /// The next event `consumer` has not seen: its seeded ones first, then the log from its
    /// position, skipping what its filter does not match.
    private mutating func nextNew(for consumer: MemoryConsumer) -> StoredEvent? {
        while let sequence = consumer.seeded.popFirst() {
            if let stored = stored(sequence) { return stored }
            consumer.missed += 1
            eventsMissed += 1
        }
        if consumer.nextSequence < firstSequence { consumer.nextSequence = firstSequence }
        while consumer.nextSequence <= lastSequence {
            let stored = log[Int(consumer.nextSequence - firstSequence)]
            consumer.nextSequence += 1
            if consumer.filter.matches(stored.subject) { return stored }
        }
        return nil
    }

    private func deliverFirst(_ stored: StoredEvent, to consumer: MemoryConsumer, now: ContinuousClock.Instant)
        -> MemoryDelivery
    {
        let dueAt = now + consumer.options.expiryWait(afterDelivery: 1)
        consumer.schedule(
            stored.sequence,
            MemoryConsumer.Pending(
                deliveries: 1,
                dueAt: dueAt,
                version: 0,
                firstDeliveredAt: WallClock.nowNanoseconds() / 1_000_000
            )
        )
        consumer.delivered += 1
        return MemoryDelivery(stored: stored, deliveries: 1, dueAt: dueAt)
    }

    /// Takes back deliveries a subscription fetched but never handed out (it closed): each is
    /// due again at once with its delivery count as before, so it is redelivered without
    /// counting as an attempt.
    mutating func undeliver(_ deliveries: [MemoryDelivery], consumer name: String, now: ContinuousClock.Instant)
        -> [CheckedContinuation<Void, Never>]
    {
        guard let consumer = consumers[name], !deliveries.isEmpty else { return [] }
        for delivery in deliveries {
            let sequence = delivery.stored.sequence
            guard var pending = consumer.pending[sequence], pending.deliveries == delivery.deliveries else { continue }
            pending.deliveries -= 1
            pending.version &+= 1
            pending.dueAt = now
            consumer.schedule(sequence, pending)
            consumer.delivered -= 1
        }
        return consumer.takeWaiters()
    }

    /// Applies a decision. A decision for a delivery that is no longer pending (it expired and
    /// was redelivered, or the consumer is gone) changes nothing, as on JetStream.
    ///
    /// - Throws: ``CourierError/Code/shutdown`` once the provider is shut down: the decision was
    ///   not recorded.
    mutating func apply(
        _ action: AckAction,
        sequence: UInt64,
        consumer name: String,
        now given: ContinuousClock.Instant?
    ) throws -> (DeadLetterJob?, [CheckedContinuation<Void, Never>]) {
        guard !closed else { throw closedError() }
        guard let consumer = consumers[name] else { return (nil, []) }
        // The caller reads the clock for every decision but an ack.
        var now: ContinuousClock.Instant { given ?? .now }
        let wasFull = consumer.pending.count >= consumer.options.maxAckPending
        // Each case looks the delivery up once: this runs under the lock the publisher waits on.
        switch action {
        case .ack, .doubleAck:
            guard consumer.pending.removeValue(forKey: sequence) != nil else { return (nil, []) }
            consumer.acknowledged += 1
            return (nil, wasFull ? consumer.takeWaiters() : [])
        case .inProgress:
            guard var pending = consumer.pending[sequence] else { return (nil, []) }
            pending.version &+= 1
            pending.dueAt = now + consumer.options.expiryWait(afterDelivery: pending.deliveries)
            consumer.schedule(sequence, pending)
            return (nil, [])
        case .nak(let delay):
            guard var pending = consumer.pending[sequence] else { return (nil, []) }
            if pending.deliveries >= consumer.options.maxDeliver {
                consumer.pending[sequence] = nil
                let job = deadLetterJob(
                    consumer,
                    sequence,
                    pending,
                    reason: "nak'ed on its final delivery (maximum deliveries \(consumer.options.maxDeliver) exhausted)"
                )
                return (job, wasFull ? consumer.takeWaiters() : [])
            }
            pending.version &+= 1
            pending.dueAt = now + (delay ?? .zero)
            consumer.schedule(sequence, pending)
            return (nil, consumer.takeWaiters())
        case .term(let reason):
            guard let pending = consumer.pending.removeValue(forKey: sequence) else { return (nil, []) }
            let job = reason.flatMap { deadLetterJob(consumer, sequence, pending, reason: "terminated: \($0)") }
            return (job, wasFull ? consumer.takeWaiters() : [])
        }
    }

    private func deadLetterJob(
        _ consumer: MemoryConsumer,
        _ sequence: UInt64,
        _ pending: MemoryConsumer.Pending,
        reason: String
    ) -> DeadLetterJob? {
        guard let stored = stored(sequence) else { return nil }
        return DeadLetterJob(
            consumer: consumer.name,
            sequence: sequence,
            letter: DeadLetterEvent(
                event: stored.event,
                reason: reason,
                attempts: pending.deliveries,
                consumer: consumer.durable ? consumer.name : nil,
                streamSequence: sequence,
                firstFailureAt: pending.firstDeliveredAt
            ),
            handOffFailures: pending.handOffFailures
        )
    }

    /// A dead-letter hand-off failed: keep the event pending and try again after
    /// ``SubscribeOptions/deadLetterHandOffDelay(afterFailures:)``, waking the consumer's
    /// waiters so one of them runs the retry. After ``SubscribeOptions/deadLetterHandOffAttempts``
    /// failures the consumer gives up on the event, which stays in the log.
    mutating func requeueDeadLetter(_ job: DeadLetterJob, now: ContinuousClock.Instant)
        -> [CheckedContinuation<Void, Never>]
    {
        deadLetterFailures += 1
        guard let consumer = consumers[job.consumer] else { return [] }
        let failures = job.handOffFailures + 1
        guard failures <= SubscribeOptions.deadLetterHandOffAttempts else {
            deadLettersAbandoned += 1
            return []
        }
        consumer.schedule(
            job.sequence,
            MemoryConsumer.Pending(
                deliveries: job.letter.attempts,
                dueAt: now + SubscribeOptions.deadLetterHandOffDelay(afterFailures: failures),
                version: (consumer.pending[job.sequence]?.version ?? 0) &+ 1,
                firstDeliveredAt: job.letter.firstFailureAt ?? job.letter.deadLetteredAt,
                deadLetterReason: job.letter.reason,
                handOffFailures: failures
            )
        )
        return consumer.takeWaiters()
    }
}
