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
///
/// After ``shutdown()`` the workers are gone, but a task that prefers the executor may still be
/// suspended (sleeping in a retry backoff, say). It must still run to its end, so a job enqueued
/// after shutdown runs on a short-lived thread of its own: the task can then see that its owner
/// shut down and return an error, instead of waiting forever on a queue nobody serves.
///
/// `@unchecked Sendable`: `jobs`, `threads` and `stopping` are only read or written with `mutex`
/// held.
package final class BlockingExecutor: TaskExecutor, @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var jobs: Deque<UnownedJob> = []
    private var threads: [pthread_t] = []
    private var stopping = false

    /// Starts `threads` worker threads.
    package init(threads count: Int) {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
        pthread_mutex_lock(mutex)
        for _ in 0..<max(1, count) { threads.append(start(WorkerContext(executor: self, job: nil))) }
        pthread_mutex_unlock(mutex)
    }

    /// What a thread runs: the worker loop, or one job enqueued after shutdown.
    private final class WorkerContext {
        let executor: BlockingExecutor
        let job: UnownedJob?
        init(executor: BlockingExecutor, job: UnownedJob?) {
            self.executor = executor
            self.job = job
        }
    }

    private func start(_ context: WorkerContext) -> pthread_t {
        var thread = pthread_t()
        pthread_create(
            &thread, nil,
            { raw in
                let context = Unmanaged<WorkerContext>.fromOpaque(raw!).takeRetainedValue()
                if let job = context.job {
                    job.runSynchronously(on: context.executor.asUnownedTaskExecutor())
                } else {
                    context.executor.work()
                }
                return nil
            }, Unmanaged.passRetained(context).toOpaque())
        return thread
    }

    package func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        pthread_mutex_lock(mutex)
        if stopping {
            pthread_mutex_unlock(mutex)
            pthread_detach(start(WorkerContext(executor: self, job: unowned)))
            return
        }
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
    package var isCurrent: Bool {
        let me = pthread_self()
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return threads.contains { pthread_equal($0, me) != 0 }
    }

    /// Lets the workers finish queued jobs and exit; jobs enqueued afterwards each run on a
    /// thread of their own. Idempotent.
    package func shutdown() {
        pthread_mutex_lock(mutex)
        let workers = stopping ? [] : threads
        stopping = true
        threads = []
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
        for thread in workers where pthread_equal(thread, pthread_self()) == 0 { pthread_join(thread, nil) }
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }
}
