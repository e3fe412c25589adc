import DequeModule

#if canImport(Glibc)
import Glibc
#endif

/// A `TaskExecutor` backed by a few dedicated threads, for tasks that make blocking calls (a
/// synchronous cnats publish waits for the server's acknowledgement; an ingest worker parks
/// while its ring is empty) without occupying Swift's cooperative pool.
///
/// A task that prefers this executor for a whole loop (`withTaskExecutorPreference`) makes its
/// blocking calls with no thread hop at all, which is how a single publisher reaches raw cnats
/// speed.
public final class BlockingExecutor: TaskExecutor, @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var jobs: Deque<UnownedJob> = []
    private var threads: [pthread_t] = []
    private var stopping = false

    /// Starts `threads` worker threads.
    public init(threads: Int) {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
        for _ in 0..<max(1, threads) {
            var thread = pthread_t()
            let context = Unmanaged.passRetained(WorkerContext(executor: self)).toOpaque()
            pthread_create(
                &thread, nil,
                { raw in
                    let context = Unmanaged<WorkerContext>.fromOpaque(raw!).takeRetainedValue()
                    context.executor.work()
                    return nil
                }, context)
            self.threads.append(thread)
        }
    }

    private final class WorkerContext {
        let executor: BlockingExecutor
        init(executor: BlockingExecutor) {
            self.executor = executor
        }
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        pthread_mutex_lock(mutex)
        jobs.append(unowned)
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    private func work() {
        while true {
            pthread_mutex_lock(mutex)
            while jobs.isEmpty && !stopping { pthread_cond_wait(condition, mutex) }
            if jobs.isEmpty && stopping {
                pthread_mutex_unlock(mutex)
                return
            }
            let job = jobs.removeFirst()
            pthread_mutex_unlock(mutex)
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }

    /// Whether the calling thread is one of this executor's workers.
    public var isCurrent: Bool {
        let me = pthread_self()
        return threads.contains { pthread_equal($0, me) != 0 }
    }

    /// Lets the workers finish queued jobs and exit. The executor must not be used afterwards.
    public func shutdown() {
        pthread_mutex_lock(mutex)
        stopping = true
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
        for thread in threads where !pthread_equal(thread, pthread_self()).boolValue { pthread_join(thread, nil) }
        threads.removeAll()
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }
}

extension Int32 {
    fileprivate var boolValue: Bool { self != 0 }
}
