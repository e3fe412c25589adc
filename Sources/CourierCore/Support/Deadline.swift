import Synchronization

/// Runs `body`, failing with ``CourierError/Code/timeout`` when it takes longer than `limit` on
/// `clock`. A body that overruns is cancelled and abandoned, so an uncooperative sink cannot
/// hold the caller.
package func withDeadline<T: Sendable>(
    _ limit: Duration,
    clock: any Clock<Duration>,
    what: String,
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let race = DeadlineRace<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
            race.start(continuation)
            let timer = Task {
                do { try await clock.sleep(for: limit) } catch { return }
                race.finish(
                    .failure(
                        CourierError(.timeout, "\(what) took longer than \(limit)", input: what, isRetryable: true)))
            }
            let work = Task {
                do { race.finish(.success(try await body())) } catch { race.finish(.failure(error)) }
            }
            race.attach(timer: timer, work: work)
        }
    } onCancel: {
        race.finish(.failure(CancellationError()))
    }
}

/// The one-shot state of ``withDeadline(_:clock:what:_:)``: whichever of the body, the timer and
/// cancellation finishes first resumes the caller and cancels the others.
private final class DeadlineRace<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var pending: Result<T, any Error>?
        var timer: Task<Void, Never>?
        var work: Task<Void, Never>?
        var done = false
    }

    private let state = Mutex(State())

    func start(_ continuation: CheckedContinuation<T, any Error>) {
        let early = state.withLock { state -> Result<T, any Error>? in
            if let pending = state.pending { return pending }
            state.continuation = continuation
            return nil
        }
        if let early { continuation.resume(with: early) }
    }

    func attach(timer: Task<Void, Never>, work: Task<Void, Never>) {
        let cancel = state.withLock { state -> Bool in
            state.timer = timer
            state.work = work
            return state.done
        }
        if cancel {
            timer.cancel()
            work.cancel()
        }
    }

    func finish(_ result: Result<T, any Error>) {
        let (continuation, timer, work) = state.withLock {
            state -> (CheckedContinuation<T, any Error>?, Task<Void, Never>?, Task<Void, Never>?) in
            guard !state.done else { return (nil, nil, nil) }
            state.done = true
            if state.continuation == nil { state.pending = result }
            defer { state.continuation = nil }
            return (state.continuation, state.timer, state.work)
        }
        timer?.cancel()
        work?.cancel()
        continuation?.resume(with: result)
    }
}
