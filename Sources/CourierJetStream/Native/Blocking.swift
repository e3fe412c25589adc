#if NATS
import DequeModule

/// Runs blocking cnats calls (JetStream API requests, connect, flush, drain, key-value watches)
/// on threads of their own, never on Swift's cooperative pool nor on libdispatch's.
///
/// On Linux the cooperative pool is libdispatch's global pool: one thread per core, grown only
/// by a monitor that adds a thread now and then once the others are blocked. Blocking calls made
/// there (as they once were) stall every task of the process for seconds at a time.
enum Blocking {
    private static let pool = BlockingPool(idleTimeout: .seconds(30))

    /// Runs `body` on a blocking-call thread and returns its result.
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            pool.submit { continuation.resume(with: Result { try body() }) }
        }
    }

    /// Runs `body` on a blocking-call thread without waiting for it.
    static func detach(_ body: @escaping @Sendable () -> Void) {
        pool.submit(body)
    }
}

/// An elastic pool of threads for blocking calls: a job runs at once on an idle thread, or on a
/// new one when none is idle (every blocking call is bounded by its own timeout, so the pool
/// needs no upper bound; a call never waits behind another). A thread idle for `idleTimeout`
/// exits.
///
/// `@unchecked Sendable`: `jobs`, `idle`, `wakeups` and `threads` are only read or written with
/// `mutex` held; the mutex and condition live as long as the pool, which lives for the process.
final class BlockingPool: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var jobs: Deque<@Sendable () -> Void> = []
    /// Threads waiting for a job and not yet claimed by one.
    private var idle = 0
    /// Jobs handed to idle threads that have not woken up yet.
    private var wakeups = 0
    private(set) var threads = 0
    private let idleTimeout: Duration

    init(idleTimeout: Duration) {
        self.idleTimeout = idleTimeout
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    func submit(_ job: @escaping @Sendable () -> Void) {
        pthread_mutex_lock(mutex)
        jobs.append(job)
        if idle > 0 {
            idle -= 1
            wakeups += 1
            pthread_cond_signal(condition)
            pthread_mutex_unlock(mutex)
            return
        }
        threads += 1
        pthread_mutex_unlock(mutex)
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let created = pthread_create(
            &thread, nil,
            { raw in
                Unmanaged<BlockingPool>.fromOpaque(raw!).takeRetainedValue().work()
                return nil
            }, context)
        if created == 0 {
            pthread_detach(thread)
        } else {
            // No thread to be had: run it here rather than lose it.
            Unmanaged<BlockingPool>.fromOpaque(context).release()
            pthread_mutex_lock(mutex)
            threads -= 1
            let stranded = jobs.popLast()
            pthread_mutex_unlock(mutex)
            stranded?()
        }
    }

    private func work() {
        pthread_mutex_lock(mutex)
        while true {
            if let job = jobs.popFirst() {
                pthread_mutex_unlock(mutex)
                job()
                pthread_mutex_lock(mutex)
                continue
            }
            idle += 1
            var claimed = false
            while !claimed {
                if waitTimedOut() {
                    if wakeups > 0 {
                        wakeups -= 1
                        claimed = true
                    } else {
                        idle -= 1
                        threads -= 1
                        pthread_mutex_unlock(mutex)
                        return
                    }
                } else if wakeups > 0 {
                    wakeups -= 1
                    claimed = true
                }
            }
        }
    }

    /// Waits on the condition (mutex held) at most `idleTimeout`; whether the wait timed out.
    private func waitTimedOut() -> Bool {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let seconds = idleTimeout.components.seconds
        var deadline = timespec(tv_sec: now.tv_sec + Int(seconds), tv_nsec: now.tv_nsec)
        if deadline.tv_nsec >= 1_000_000_000 {
            deadline.tv_sec += 1
            deadline.tv_nsec -= 1_000_000_000
        }
        return pthread_cond_timedwait(condition, mutex, &deadline) == ETIMEDOUT
    }
}

/// Calls `body` with a C array of C strings for `strings`, valid only during the call.
func withCStringArray<R>(_ strings: [String], _ body: (UnsafeMutablePointer<UnsafePointer<CChar>?>) throws -> R)
    rethrows -> R
{
    let duplicated = strings.map { strdup($0) }
    defer { duplicated.forEach { free($0) } }
    var pointers = duplicated.map { UnsafePointer<CChar>($0) }
    return try pointers.withUnsafeMutableBufferPointer { try body($0.baseAddress!) }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
#endif
