import Foundation

/// Runs blocking work — a child process, a CPU-heavy tool such as `openssl req`, a bounded poll —
/// on a thread of its own, outside Swift's cooperative pool.
///
/// The pool has one thread per core; a test that blocks one of them stalls every other test in
/// the process, which turns timing assertions elsewhere (ack waits, redelivery delays) flaky.
public func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}
