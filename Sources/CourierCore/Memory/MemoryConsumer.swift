import DequeModule
import Synchronization

/// A dead letter to hand to a handler, outside the lock.
struct DeadLetterJob: Sendable {
    let consumer: String
    let sequence: UInt64
    let letter: DeadLetterEvent
    /// Hand-offs of this letter that failed before.
    var handOffFailures = 0
}

/// One delivery a step handed out: the event, its delivery count, and when its ack wait ends
/// (a subscription that still holds it then drops it: the consumer redelivers it).
struct MemoryDelivery {
    let stored: StoredEvent
    let deliveries: Int
    let dueAt: ContinuousClock.Instant
}

/// What a subscription should do next.
enum DeliveryStep: Sendable {
    /// One redelivery, or up to the step's limit of new deliveries, in order.
    case deliver([MemoryDelivery])
    case deadLetter([DeadLetterJob])
    /// Nothing to do now. The waiter registers only if neither the consumer's generation nor the
    /// stream's last sequence moved meanwhile (a publish in between must not be slept through).
    case wait(generation: UInt64, lastSequence: UInt64, deadline: ContinuousClock.Instant?)
    case closed
}

/// Set once, when a consumer is deleted or its stream shut down. Subscriptions read it without
/// the provider's lock, so that deliveries they fetched earlier are not handed out after it.
final class ConsumerEnd: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .acquiring) }
    func set() { flag.store(true, ordering: .releasing) }
}

/// Consumer state. Only ever touched while the provider's lock is held (but for `end`).
final class MemoryConsumer {
    struct Pending {
        var deliveries: Int
        var dueAt: ContinuousClock.Instant
        var version: UInt32
        var firstDeliveredAt: Int64
        /// Set when the next due time should dead-letter instead of redeliver.
        var deadLetterReason: String?
        /// Dead-letter hand-offs that failed so far.
        var handOffFailures = 0
    }

    struct Due {
        let dueAt: ContinuousClock.Instant
        let sequence: UInt64
        let version: UInt32
    }

    struct Waiter {
        let continuation: CheckedContinuation<Void, Never>
        var timer: Task<Void, Never>? = nil
    }

    let name: String
    let durable: Bool
    let filter: SubjectFilter
    var options: SubscribeOptions
    var nextSequence: UInt64
    /// Sequences to deliver before `nextSequence` (the `lastPerSubject` seed).
    var seeded: Deque<UInt64>
    var pending: [UInt64: Pending] = [:]
    var due = MinHeap<Due> { ($0.dueAt, $0.sequence) < ($1.dueAt, $1.sequence) }
    var waiters: [UInt64: Waiter] = [:]
    var generation: UInt64 = 0
    var subscriptions = 0
    let end = ConsumerEnd()
    var deleted: Bool {
        get { end.isSet }
        set { if newValue { end.set() } }
    }
    var delivered: UInt64 = 0
    var acknowledged: UInt64 = 0
    var missed: UInt64 = 0

    init(
        name: String, durable: Bool, filter: SubjectFilter, options: SubscribeOptions, start: UInt64,
        seeded: Deque<UInt64>
    ) {
        self.name = name
        self.durable = durable
        self.filter = filter
        self.options = options
        self.nextSequence = start
        self.seeded = seeded
    }

    /// Removes and returns every waiter, bumping the generation so a waiter about to register
    /// notices the change.
    func takeWaiters() -> [CheckedContinuation<Void, Never>] {
        generation &+= 1
        guard !waiters.isEmpty else { return [] }
        let taken = waiters.values
        waiters.removeAll(keepingCapacity: true)
        return taken.map { waiter in
            waiter.timer?.cancel()
            return waiter.continuation
        }
    }

    func schedule(_ sequence: UInt64, _ pending: Pending) {
        self.pending[sequence] = pending
        due.insert(Due(dueAt: pending.dueAt, sequence: sequence, version: pending.version))
        // Acked deliveries leave stale heap entries behind; compact once they dominate.
        if due.count > 2 * self.pending.count + 64 {
            due.retain { self.pending[$0.sequence]?.version == $0.version }
        }
    }

    func exhaustionReason(_ pending: Pending) -> String? {
        if let reason = pending.deadLetterReason { return reason }
        guard pending.deliveries >= options.maxDeliver else { return nil }
        return "maximum deliveries (\(options.maxDeliver)) exhausted"
    }
}
