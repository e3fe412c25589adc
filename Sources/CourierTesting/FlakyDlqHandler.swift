public import CourierCore
import Synchronization

/// A dead-letter handler that fails its first `failures` hand-offs (each after `delay`), then
/// takes letters: for tests of failing dead-letter stores.
public final class FlakyDlqHandler: DlqHandler {
    private let state: Mutex<(left: Int, stored: [DeadLetterEvent], calls: [ContinuousClock.Instant])>
    private let delay: Duration
    private let begun = Atomic<Int>(0)

    /// A handler failing its first `failures` hand-offs, each after `delay`.
    public init(failures: Int, delay: Duration = .zero) {
        state = Mutex((failures, [], []))
        self.delay = delay
    }

    public func handle(_ letter: DeadLetterEvent) async throws {
        begun.add(1, ordering: .relaxed)
        if delay > .zero { try await Task.sleep(for: delay) }
        let fail = state.withLock { state -> Bool in
            state.calls.append(.now)
            guard state.left > 0 else {
                state.stored.append(letter)
                return false
            }
            state.left -= 1
            return true
        }
        if fail { throw CourierError(.storageFailed, "dead-letter store unavailable", isRetryable: true) }
    }

    public func list(limit: Int) async throws -> [DeadLetterEvent] { state.withLock { Array($0.stored.suffix(limit)) } }
    public func count() async throws -> Int { state.withLock { $0.stored.count } }
    /// The letters taken.
    public var stored: [DeadLetterEvent] { state.withLock { $0.stored } }
    /// When each hand-off finished (after its delay).
    public var calls: [ContinuousClock.Instant] { state.withLock { $0.calls } }
    /// Hand-offs begun (counted before the delay).
    public var started: Int { begun.load(ordering: .relaxed) }
}
