import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The `courier` executable built next to the running test bundle, or `$COURIER_BIN`, for tests
/// that run the command line tool as a child process.
///
/// - Throws: ``CourierTestingError`` when it is not there (build it with `swift build`).
public func courierExecutable() throws -> String {
    if let explicit = ProcessInfo.processInfo.environment["COURIER_BIN"] { return explicit }
    let bundleDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    var candidates = [bundleDirectory.appendingPathComponent("courier").path]
    // The test bundle may be a directory (…/courierPackageTests.xctest/…) on some setups.
    candidates.append(bundleDirectory.deletingLastPathComponent().appendingPathComponent("courier").path)
    if let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) { return found }
    throw CourierTestingError(
        "courier executable not found at \(candidates); build it (swift build) or set COURIER_BIN")
}

/// Runs `courier` with `arguments` and returns its exit status, standard output and standard
/// error, killing it if it runs longer than `timeout`.
public func runCourier(_ arguments: [String], environment: [String: String] = [:], timeout: Duration = .seconds(60))
    async throws -> (status: Int32, output: String, errors: String)
{
    let executable = try courierExecutable()
    return try await offPool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let directory = NSTemporaryDirectory() + "courier-cli-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let outPath = directory + "/out"
        let errPath = directory + "/err"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = ContinuousClock.now + timeout
        while process.isRunning, ContinuousClock.now < deadline { usleep(10_000) }
        if process.isRunning {
            process.terminate()
            kill(process.processIdentifier, SIGKILL)
        }
        process.waitUntilExit()
        let output = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        let errors = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        return (process.terminationStatus, output, errors)
    }
}
