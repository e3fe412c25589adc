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

/// Runs `executable` with `arguments`, writes `input` to its standard input and returns its
/// standard output, waiting for it off the cooperative pool (see ``offPool(_:)``).
///
/// - Throws: ``CourierTestingError`` naming the command, with its standard error, when it exits
///   with a non-zero status.
public func runChildProcess(_ executable: String, _ arguments: [String], input: String = "") async throws -> String {
    try await offPool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let stdin = Pipe()
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        let errors = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let command = ([executable] + arguments.prefix(1)).joined(separator: " ")
            throw CourierTestingError("\(command) failed: \(String(decoding: errors, as: UTF8.self))")
        }
        return String(decoding: output, as: UTF8.self)
    }
}
