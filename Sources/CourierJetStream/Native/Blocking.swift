#if NATS
import Dispatch

/// Runs blocking cnats calls (JetStream API requests, connect, flush, drain) on dedicated
/// Dispatch threads, never on Swift's cooperative pool.
enum Blocking {
    private static let queue = DispatchQueue(
        label: "courier.nats.blocking", qos: .userInitiated, attributes: .concurrent)

    /// Runs `body` on a blocking-call thread and returns its result.
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try body() }) }
        }
    }

    /// Runs `body` on a blocking-call thread without waiting for it.
    static func detach(_ body: @escaping @Sendable () -> Void) {
        queue.async(execute: body)
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
