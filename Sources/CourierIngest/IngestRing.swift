import CourierCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One shard's bounded ring: a multi-producer, multi-consumer array queue in the style of
/// Dmitry Vyukov's (each slot carries a sequence number that says whether it is free for
/// position `p` or holds the event of position `p`), plus the shard's counters and the parking
/// spot of its worker.
///
/// Everything lives in manually allocated memory reached through raw pointers, so the struct
/// is trivially copyable: producers copy it out of the shard table with no reference counting,
/// and no two hot atomics share a cache line.
///
/// The tail word packs the next position (bits 0–46), a closed bit (47) and the epoch of the
/// shard layout (48–63). A producer's enqueue succeeds only if the epoch it computed its shard
/// with is still current and the ring is open, which is what lets the bus reshard without ever
/// placing an event on a stale shard.
///
/// `@unchecked Sendable`: the struct holds only pointers, set once; everything they point at is
/// atomics, a pthread mutex and condition, or a value slot whose ownership is handed over by its
/// sequence number (a producer writes the slot before storing the sequence with release
/// ordering; the consumer acquires the sequence before moving the value out, and the reverse
/// when the slot is freed).
struct IngestRing: @unchecked Sendable {
    static let positionMask: UInt64 = (1 << 47) - 1
    static let closedBit: UInt64 = 1 << 47

    /// Counter slots, each on its own cache line (8 words apart).
    enum Counter: Int, CaseIterable {
        case tail = 0
        case head
        case sleeping
        /// Events evicted by `.dropOldest`.
        case evicted
        /// Events dropped before entering the ring (`.dropNewest`, `.sample`).
        case droppedOnEntry
        /// Events refused to their producer (`.failProducer`, `.block` timeouts).
        case rejected
        case dispatched
        case batches
        /// Events of batches the adapter never took (fatal error or retries exhausted).
        case droppedInBatches
        /// Events the adapter rejected one by one and the bus dead-lettered.
        case deadLettered
        /// Events still in the ring when a shutdown deadline forced the bus to give up.
        case droppedAtShutdown
        /// Nanoseconds the last dispatch took.
        case lastDispatchNanos
        /// Batches retried.
        case retries
        /// Set by producers when a full batch is waiting, or by control operations.
        case wakeRequested
    }

    static let stride = 8  // words between counters: 64 bytes

    let capacity: Int
    let mask: Int
    private let sequences: UnsafeMutablePointer<Atomic<Int>>
    private let values: UnsafeMutablePointer<RawEvent>
    private let counters: UnsafeMutablePointer<Atomic<UInt64>>
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    /// A ring of `capacity` slots (a power of two).
    init(capacity: Int, epoch: UInt64) {
        precondition(capacity > 1 && capacity & (capacity - 1) == 0, "ring capacity must be a power of two")
        self.capacity = capacity
        self.mask = capacity - 1
        sequences = .allocate(capacity: capacity)
        for index in 0..<capacity { (sequences + index).initialize(to: Atomic(index)) }
        values = .allocate(capacity: capacity)
        let words = Counter.allCases.count * Self.stride
        counters = .allocate(capacity: words)
        for index in 0..<words { (counters + index).initialize(to: Atomic(0)) }
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
        counter(.tail).pointee.store(epoch << 48, ordering: .releasing)
    }

    /// Frees the ring; it must be empty and unused.
    func deallocate() {
        drainRemaining { _ in }
        sequences.deinitialize(count: capacity)
        sequences.deallocate()
        values.deallocate()
        counters.deinitialize(count: Counter.allCases.count * Self.stride)
        counters.deallocate()
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    @inline(__always)
    func counter(_ counter: Counter) -> UnsafeMutablePointer<Atomic<UInt64>> {
        counters + counter.rawValue * Self.stride
    }

    @inline(__always)
    func load(_ which: Counter) -> UInt64 { counter(which).pointee.load(ordering: .relaxed) }

    @inline(__always)
    func add(_ which: Counter, _ amount: UInt64) {
        counter(which).pointee.add(amount, ordering: .relaxed)
    }

    // MARK: Producing

    enum EnqueueResult {
        case enqueued
        case full
        /// The ring is closed or the epoch moved on: reload the layout and retry.
        case stale
    }

    /// Moves `event` in (leaving `nil`, with no reference-count traffic) if the ring is open
    /// under `epoch` and has room; otherwise leaves it in place.
    @inline(__always)
    func enqueue(_ event: inout RawEvent?, epoch: UInt64) -> EnqueueResult {
        let tail = counter(.tail)
        var word = tail.pointee.load(ordering: .relaxed)
        while true {
            if word >> 48 != epoch || word & Self.closedBit != 0 { return .stale }
            let position = Int(word & Self.positionMask)
            let slot = position & mask
            let difference = sequences[slot].load(ordering: .acquiring) - position
            if difference == 0 {
                let (exchanged, original) = tail.pointee.weakCompareExchange(
                    expected: word,
                    desired: word + 1,
                    successOrdering: .relaxed,
                    failureOrdering: .relaxed
                )
                if exchanged {
                    (values + slot).initialize(to: event.take().unsafelyUnwrapped)
                    sequences[slot].store(position + 1, ordering: .releasing)
                    return .enqueued
                }
                word = original
            } else if difference < 0 {
                return .full
            } else {
                word = tail.pointee.load(ordering: .relaxed)
            }
        }
    }

    /// Positions claimed so far (events ever enqueued).
    var enqueuedCount: UInt64 { load(.tail) & Self.positionMask }

    /// Events waiting in the ring (approximate while producers are active).
    var pending: Int {
        let tail = Int(load(.tail) & Self.positionMask)
        let head = Int(load(.head))
        return max(0, tail - head)
    }

    // MARK: Consuming

    /// Removes the oldest event, if one is ready.
    func dequeue() -> RawEvent? {
        let head = counter(.head)
        var position = Int(head.pointee.load(ordering: .relaxed))
        while true {
            let slot = position & mask
            let difference = sequences[slot].load(ordering: .acquiring) - (position + 1)
            if difference == 0 {
                let (exchanged, original) = head.pointee.weakCompareExchange(
                    expected: UInt64(position),
                    desired: UInt64(position + 1),
                    successOrdering: .relaxed,
                    failureOrdering: .relaxed
                )
                if exchanged {
                    let event = (values + slot).move()
                    sequences[slot].store(position + capacity, ordering: .releasing)
                    return event
                }
                position = Int(original)
            } else if difference < 0 {
                return nil
            } else {
                position = Int(head.pointee.load(ordering: .relaxed))
            }
        }
    }

    /// Moves up to `limit` ready events, oldest first, into `buffer`; returns how many. Claims
    /// the whole run with one compare-exchange.
    func dequeue(into buffer: inout [RawEvent], limit: Int) -> Int {
        let head = counter(.head)
        while true {
            let position = Int(head.pointee.load(ordering: .relaxed))
            var ready = 0
            while ready < limit {
                let slot = (position + ready) & mask
                if sequences[slot].load(ordering: .acquiring) != position + ready + 1 { break }
                ready += 1
            }
            if ready == 0 { return 0 }
            let (exchanged, _) = head.pointee.compareExchange(
                expected: UInt64(position),
                desired: UInt64(position + ready),
                ordering: .relaxed
            )
            guard exchanged else { continue }  // a producer evicted the oldest meanwhile
            for offset in 0..<ready {
                let slot = (position + offset) & mask
                buffer.append((values + slot).move())
                sequences[slot].store(position + offset + capacity, ordering: .releasing)
            }
            return ready
        }
    }

    /// Removes every ready event, passing each to `body`.
    func drainRemaining(_ body: (RawEvent) -> Void) {
        while let event = dequeue() { body(event) }
    }

    // MARK: Layout changes

    /// Closes the ring: every enqueue fails as stale until it is reopened.
    func close() {
        let tail = counter(.tail)
        var word = tail.pointee.load(ordering: .relaxed)
        while word & Self.closedBit == 0 {
            let (exchanged, original) = tail.pointee.compareExchange(
                expected: word,
                desired: word | Self.closedBit,
                ordering: .acquiringAndReleasing
            )
            if exchanged { return }
            word = original
        }
    }

    /// Reopens a closed ring under `epoch`.
    func reopen(epoch: UInt64) {
        let tail = counter(.tail)
        let position = tail.pointee.load(ordering: .acquiring) & Self.positionMask
        tail.pointee.store(epoch << 48 | position, ordering: .releasing)
    }

    var isClosed: Bool { load(.tail) & Self.closedBit != 0 }

    /// Enqueued events whose fate is known: dispatched, dead-lettered, evicted or dropped.
    var accounted: UInt64 {
        load(.dispatched) + load(.deadLettered) + load(.evicted) + load(.droppedInBatches) + load(.droppedAtShutdown)
    }

    /// Events enqueued and not yet accounted for (dispatched, dead-lettered, evicted, or dropped).
    var unaccounted: UInt64 {
        let accounted = self.accounted
        let enqueued = enqueuedCount
        return enqueued > accounted ? enqueued - accounted : 0
    }

    // MARK: Parking

    /// Blocks the worker thread until woken or `timeout` passes; returns whether it was woken
    /// (a full batch is waiting, or a flush or layout change wants the worker's attention).
    @discardableResult
    func park(timeout: Duration, returnEarlyOnWake: Bool = true) -> Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        if counter(.wakeRequested).pointee.exchange(0, ordering: .acquiring) != 0 { return true }
        counter(.sleeping).pointee.store(1, ordering: .sequentiallyConsistent)
        if counter(.wakeRequested).pointee.load(ordering: .sequentiallyConsistent) == 0 {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            let (seconds, attoseconds) = timeout.components
            let nanoseconds = Int(now.tv_nsec) + Int(attoseconds / 1_000_000_000)
            var deadline = timespec(
                tv_sec: now.tv_sec + Int(seconds) + nanoseconds / 1_000_000_000,
                tv_nsec: nanoseconds % 1_000_000_000
            )
            pthread_cond_timedwait(condition, mutex, &deadline)
        }
        counter(.sleeping).pointee.store(0, ordering: .relaxed)
        return counter(.wakeRequested).pointee.exchange(0, ordering: .acquiring) != 0
    }

    /// Wakes the worker if it is parked (or makes its next park return at once).
    func wake() {
        counter(.wakeRequested).pointee.store(1, ordering: .sequentiallyConsistent)
        if counter(.sleeping).pointee.load(ordering: .sequentiallyConsistent) != 0 {
            pthread_mutex_lock(mutex)
            pthread_cond_signal(condition)
            pthread_mutex_unlock(mutex)
        }
    }

    /// Wakes the worker only if it is parked: the cheap check producers make.
    @inline(__always)
    func wakeIfSleeping() {
        if counter(.sleeping).pointee.load(ordering: .relaxed) != 0 { wake() }
    }
}
