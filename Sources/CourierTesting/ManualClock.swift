import Synchronization

/// A clock that only moves when told to: sleepers wake when ``advance(by:)`` passes their
/// deadline. Inject it where code waits on a clock (retry backoff, timeouts) to test timing
/// without real waits.
///
/// ```swift
/// let clock = ManualClock()
/// // … start work that sleeps on `clock` …
/// try #require(await clock.waitForSleepers(1, within: .seconds(60)) == [.milliseconds(100)])
/// clock.advance(by: .milliseconds(100))
/// ```
///
/// Require the sleeper, do not just expect it: advancing before the sleep began moves its
/// deadline along with the clock, and work awaited after that would wait forever.
public final class ManualClock: Clock, Sendable {
    /// A point on the manual clock: the time advanced since it was created.
    public struct Instant: InstantProtocol, Sendable {
        /// Time since the clock's creation.
        public var offset: Duration

        /// The instant `offset` after the clock's creation.
        public init(offset: Duration) { self.offset = offset }

        public func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        public func duration(to other: Instant) -> Duration { other.offset - offset }
        public static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
    }

    private struct Sleeper {
        let id: UInt64
        let deadline: Instant
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now = Instant(offset: .zero)
        var sleepers: [Sleeper] = []
        var nextID: UInt64 = 0
        /// Sleepers cancelled before they registered.
        var cancelled: Set<UInt64> = []
    }

    private let state = Mutex(State())

    /// A clock at offset zero.
    public init() {}

    /// The current instant.
    public var now: Instant { state.withLock { $0.now } }

    /// Zero: the clock is exact.
    public var minimumResolution: Duration { .zero }

    /// Suspends until the clock is advanced to `deadline`; throws `CancellationError` when the
    /// task is cancelled first.
    public func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
        let id = state.withLock { state -> UInt64 in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let outcome = state.withLock { state -> Result<Void, any Error>? in
                    if state.cancelled.remove(id) != nil { return .failure(CancellationError()) }
                    if deadline <= state.now { return .success(()) }
                    state.sleepers.append(Sleeper(id: id, deadline: deadline, continuation: continuation))
                    return nil
                }
                if let outcome { continuation.resume(with: outcome) }
            }
        } onCancel: {
            let sleeper = state.withLock { state -> Sleeper? in
                guard let position = state.sleepers.firstIndex(where: { $0.id == id }) else {
                    state.cancelled.insert(id)
                    return nil
                }
                return state.sleepers.remove(at: position)
            }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
        state.withLock { _ = $0.cancelled.remove(id) }
    }

    /// Moves the clock forward by `duration`, waking every sleeper whose deadline it reaches.
    public func advance(by duration: Duration) {
        let woken = state.withLock { state -> [Sleeper] in
            state.now = state.now.advanced(by: duration)
            let now = state.now
            let woken = state.sleepers.filter { $0.deadline <= now }
            state.sleepers.removeAll { $0.deadline <= now }
            return woken
        }
        for sleeper in woken { sleeper.continuation.resume() }
    }

    /// How long each current sleeper still has to sleep, shortest first.
    public var pendingSleeps: [Duration] {
        state.withLock { state in state.sleepers.map { state.now.duration(to: $0.deadline) }.sorted() }
    }

    /// Waits (in real time, at most `timeout`) until `count` sleepers are waiting, and returns
    /// their remaining durations, shortest first; returns what is waiting at the timeout.
    public func waitForSleepers(_ count: Int, within timeout: Duration) async -> [Duration] {
        _ = await eventually(within: timeout, every: .milliseconds(2)) { pendingSleeps.count >= count }
        return pendingSleeps
    }
}
