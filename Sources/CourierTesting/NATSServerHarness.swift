public import CourierCore
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Starts a real `nats-server -js` on a free loopback port with a temporary store directory,
/// for integration tests and benchmarks. It can stop, `kill -9`, freeze (SIGSTOP), thaw
/// (SIGCONT) and restart the server on the same port and store, and read its monitoring
/// endpoints (``NATSServerHarness/monitor(_:timeout:)``). Every server it starts is stopped by PID when the harness is
/// released. The binary is `$NATS_SERVER_BIN` when set (see ``serverBinary()``), which is how CI
/// runs the same tests against several server versions.
///
/// ```swift
/// let server = try await NATSServerHarness.start()
/// defer { server.stop() }
/// let provider = try await JetStreamProvider.connect(.init(url: server.url))
/// ```
///
/// `@unchecked Sendable`: the running `Process` is kept behind `process` (a mutex); every other
/// property is set in `init` and never changes.
public final class NATSServerHarness: @unchecked Sendable {
    /// The loopback port.
    public let port: Int
    /// The loopback port of the HTTP monitoring endpoints (`/varz`, `/jsz`, …).
    public let monitorPort: Int
    /// The JetStream store directory (removed by ``cleanUp()``).
    public let storeDirectory: String
    /// The work directory holding the store, the log and any configuration file.
    public let workDirectory: String
    /// Extra configuration (nats-server config syntax) the server starts with.
    public let configuration: String?
    private let extraArguments: [String]
    private let process = Mutex<Process?>(nil)
    /// A stopped server still shutting down, waited for by a thread of its own.
    private let exiting = Mutex<ExitingProcess?>(nil)

    /// `nats://127.0.0.1:<port>`.
    public var url: String { "nats://127.0.0.1:\(port)" }

    /// The server's log so far.
    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    private var logPath: String { workDirectory + "/server.log" }

    init(port: Int, monitorPort: Int, workDirectory: String, configuration: String?, extraArguments: [String]) {
        self.port = port
        self.monitorPort = monitorPort
        self.workDirectory = workDirectory
        self.storeDirectory = workDirectory + "/store"
        self.configuration = configuration
        self.extraArguments = extraArguments
    }

    /// Starts a server and waits (at most `timeout`) until it is ready.
    ///
    /// - Parameters:
    ///   - configuration: nats-server configuration text (TLS, authorization, …), optional.
    ///   - arguments: extra command-line arguments.
    ///   - timeout: how long to wait for the server to report it is ready.
    public static func start(
        configuration: String? = nil,
        arguments: [String] = [],
        timeout: Duration = .seconds(15)
    ) async throws -> NATSServerHarness {
        var lastError: (any Error)?
        for _ in 0..<5 {
            let directory = try makeWorkDirectory()
            let harness = NATSServerHarness(
                port: try freePort(),
                monitorPort: try freePort(),
                workDirectory: directory,
                configuration: configuration,
                extraArguments: arguments
            )
            do {
                try await harness.launch(timeout: timeout)
                return harness
            } catch {
                lastError = error
                harness.kill()
                harness.cleanUp()
            }
        }
        throw lastError ?? CourierError(.connectionFailed, "nats-server did not start")
    }

    /// The version of the `nats-server` binary the harness starts (`nats-server --version`), for
    /// example `2.9.10`.
    public static func binaryVersion() throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try serverBinary())
        process.arguments = ["--version"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        // `nats-server: v2.9.10`: the first "v" followed by a digit (the name has a "v" too).
        let characters = Array(text)
        guard
            let start = characters.indices.first(where: {
                characters[$0] == "v" && $0 + 1 < characters.count && characters[$0 + 1].isNumber
            })
        else {
            throw CourierTestingError("cannot read the nats-server version from '\(text)'")
        }
        return String(characters[(start + 1)...].prefix { $0 == "." || $0.isNumber })
    }

    /// Whether the binary is at least `major.minor`.
    public static func binaryIsAtLeast(_ major: Int, _ minor: Int) -> Bool {
        guard let version = try? binaryVersion() else { return false }
        let parts = version.split(separator: ".").compactMap { Int($0) } + [0, 0]
        return (parts[0], parts[1]) >= (major, minor)
    }

    /// Configuration that makes the server fsync every write (`sync_interval: always`, nats-server
    /// 2.10 and later), so a SIGKILL loses nothing it acknowledged; `nil` for older servers,
    /// which always buffer writes.
    public static var syncAlwaysConfiguration: String? {
        binaryIsAtLeast(2, 10) ? "jetstream { sync_interval: always }" : nil
    }

    /// The `nats-server` binary: `$NATS_SERVER_BIN`, then `PATH`, then the usual sbin folders.
    public static func serverBinary() throws -> String {
        var candidates: [String] = []
        if let explicit = ProcessInfo.processInfo.environment["NATS_SERVER_BIN"] { candidates.append(explicit) }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        candidates += path.split(separator: ":").map { "\($0)/nats-server" }
        candidates += [
            "/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server",
            "/usr/local/sbin/nats-server",
        ]
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw CourierError(
                .notFound,
                "nats-server not found on PATH or in /usr/sbin; install it with 'apt-get install nats-server' or set NATS_SERVER_BIN",
                input: "nats-server"
            )
        }
        return found
    }

    func launch(timeout: Duration) async throws {
        try? FileManager.default.removeItem(atPath: logPath)
        var arguments = [
            "-js", "-a", "127.0.0.1", "-p", String(port), "-m", String(monitorPort), "-sd", storeDirectory, "-l",
            logPath,
        ]
        if let configuration {
            let configPath = workDirectory + "/server.conf"
            try configuration.write(toFile: configPath, atomically: true, encoding: .utf8)
            arguments = ["-c", configPath] + arguments
        }
        arguments += extraArguments
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Self.serverBinary())
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process.withLock { $0 = process }
        Self.watch(server: process.processIdentifier)
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if log.contains("Server is ready") { return }
            guard process.isRunning else {
                throw CourierError(
                    .connectionFailed, "nats-server exited during start-up: \(log.suffix(500))", input: url)
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw CourierError(.timeout, "nats-server was not ready within \(timeout): \(log.suffix(500))", input: url)
    }

    /// The server's PID while it runs.
    public var pid: Int32? { process.withLock { $0?.isRunning == true ? $0?.processIdentifier : nil } }

    /// Stops the server gracefully (SIGTERM) and waits for it to exit.
    public func stop() {
        signal(SIGTERM)
    }

    /// Kills the server with SIGKILL, as a crash would.
    public func kill() {
        signal(SIGKILL)
    }

    /// Freezes the server with SIGSTOP: its sockets stay open but it answers nothing, as a
    /// stalled machine or a long GC pause would. ``thaw()`` resumes it.
    public func freeze() {
        guard let pid else { return }
        Glibc.kill(pid, SIGSTOP)
    }

    /// Resumes a frozen server with SIGCONT.
    public func thaw() {
        guard let pid else { return }
        Glibc.kill(pid, SIGCONT)
    }

    /// The JSON of a monitoring endpoint, for example `/jsz?accounts=true&streams=true&config=true`.
    ///
    /// - Throws: ``CourierTestingError`` when the server does not answer within `timeout`
    ///   (stopped or frozen).
    public func monitor(_ path: String, timeout: Duration = .seconds(2)) async throws -> JSONValue {
        try await LoopbackClient.getJSON(port: monitorPort, path: path, timeout: timeout)
    }

    /// The server version it reports (`/varz`), for example `2.9.10`.
    public func version() async throws -> String {
        guard let version = try await monitor("/varz")["version"]?.stringValue else {
            throw CourierTestingError("nats-server /varz has no version")
        }
        return version
    }

    /// The configuration of stream `stream` as the server reports it (`/jsz`), or `nil` when
    /// there is no such stream.
    public func streamConfig(_ stream: String) async throws -> JSONValue? {
        try await streamDetail(stream)?["config"]
    }

    /// The configuration of consumer `consumer` of stream `stream` (`/jsz`), or `nil`.
    public func consumerConfig(stream: String, consumer: String) async throws -> JSONValue? {
        let detail = try await streamDetail(stream, consumers: true)
        return detail?["consumer_detail"]?.arrayValue?.first { $0["name"]?.stringValue == consumer }?["config"]
    }

    /// The `/jsz` entry of stream `stream` (its config, state and cluster), or `nil`.
    public func streamDetail(_ stream: String, consumers: Bool = false) async throws -> JSONValue? {
        let jsz = try await monitor("/jsz?accounts=true&streams=true&config=true&consumers=\(consumers)")
        for account in jsz["account_details"]?.arrayValue ?? [] {
            for detail in account["stream_detail"]?.arrayValue ?? [] where detail["name"]?.stringValue == stream {
                return detail
            }
        }
        return nil
    }

    private func signal(_ number: Int32) {
        guard let process = process.withLock({ $0 }) else { return }
        if process.isRunning {
            Glibc.kill(process.processIdentifier, number)
            // A frozen server only acts on SIGTERM once it runs again.
            if number != SIGKILL { Glibc.kill(process.processIdentifier, SIGCONT) }
        }
        // A short wait on the caller's thread (a SIGKILL takes effect in milliseconds). A slow
        // graceful exit (seconds for a clustered JetStream node) is waited for on a thread of its
        // own: the caller is usually on Swift's cooperative pool, two threads here, and blocking
        // one for seconds stalls every other test of the process.
        let deadline = ContinuousClock.now + (number == SIGKILL ? .seconds(2) : .milliseconds(200))
        while process.isRunning, ContinuousClock.now < deadline { usleep(2_000) }
        self.process.withLock { $0 = nil }
        guard process.isRunning else { return }
        let exiting = ExitingProcess(process, workDirectory: workDirectory)
        self.exiting.withLock { $0 = exiting }
        Thread.detachNewThread { exiting.finish() }
    }

    /// Waits (at most `timeout`) until a server stopped earlier has exited.
    private func awaitExit(timeout: Duration = .seconds(15)) async {
        guard let exiting = exiting.withLock({ $0 }) else { return }
        _ = await eventually(within: timeout, every: .milliseconds(20)) { exiting.hasExited }
    }

    /// Starts the server again on the same port and store (after ``stop()`` or ``kill()``);
    /// with `emptyingStore`, on an empty store, as a new server.
    public func restart(timeout: Duration = .seconds(15), emptyingStore: Bool = false) async throws {
        stop()
        await awaitExit()
        if emptyingStore { try? FileManager.default.removeItem(atPath: storeDirectory) }
        var lastError: (any Error)?
        // The port can take a moment to be released after a kill.
        for _ in 0..<20 {
            do {
                try await launch(timeout: timeout)
                return
            } catch {
                lastError = error
                signal(SIGKILL)
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        throw lastError ?? CourierError(.connectionFailed, "nats-server did not restart", input: url)
    }

    /// Removes the work directory (store and log).
    public func cleanUp() {
        // Still shutting down: its waiting thread removes the directory once it has exited.
        if let exiting = exiting.withLock({ $0 }), exiting.removeWhenDone() { return }
        try? FileManager.default.removeItem(atPath: workDirectory)
    }

    deinit {
        signal(SIGKILL)
        cleanUp()
    }

    /// Starts a watchdog that kills the server if this process dies without stopping it (a crashed
    /// or killed test run must not leave servers behind).
    static func watch(server: Int32) {
        let watchdog = Process()
        watchdog.executableURL = URL(fileURLWithPath: "/bin/sh")
        watchdog.arguments = [
            "-c",
            "while kill -0 \(getpid()) 2>/dev/null && kill -0 \(server) 2>/dev/null; do sleep 1; done; kill -9 \(server) 2>/dev/null",
        ]
        watchdog.standardOutput = FileHandle.nullDevice
        watchdog.standardError = FileHandle.nullDevice
        try? watchdog.run()
    }

    /// A new work directory (with `store/`) for one server: under `$COURIER_TEST_TMPDIR`, else
    /// `/dev/shm` where it is writable, else `$TMPDIR` or `/tmp`.
    ///
    /// Memory-backed by default: the fault tests kill server processes, not the machine, so what
    /// a server wrote survives either way, and servers that sync every write
    /// (``syncAlwaysConfiguration``) then cost no disk flushes, which on a shared CI disk stalled
    /// unrelated tests running alongside.
    static func makeWorkDirectory() throws -> String {
        let environment = ProcessInfo.processInfo.environment
        let base =
            environment["COURIER_TEST_TMPDIR"]
            ?? (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : nil)
            ?? environment["TMPDIR"] ?? "/tmp"
        let path = "\(base)/courier-nats-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: path + "/store", withIntermediateDirectories: true)
        return path
    }

    /// A TCP port free on 127.0.0.1 right now, and never handed out before in this process.
    ///
    /// Never twice: a node restarted after a kill binds its old ports again, and with every test
    /// of the process starting servers at once, another test handed the port the kill just freed
    /// took it first (seen on a loaded machine: the restarted node exited during start-up).
    public static func freePort() throws -> Int {
        for _ in 0..<100 {
            let port = try ephemeralPort()
            if handedOutPorts.withLock({ $0.insert(port).inserted }) { return port }
        }
        throw CourierError(.connectionFailed, "no ephemeral port that was not handed out before in 100 tries")
    }

    private static let handedOutPorts = Mutex<Set<Int>>([])

    private static func ephemeralPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw CourierError(.connectionFailed, "socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else { throw CourierError(.connectionFailed, "bind() to an ephemeral port failed") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// A server process that was signalled and has not exited yet: a thread of its own waits for it
/// (at most 10 s, then SIGKILL) and removes its work directory afterwards if asked to.
///
/// `@unchecked Sendable`: `Process` is not `Sendable`, but after the signal only `isRunning`,
/// `processIdentifier` and `waitUntilExit()` are called on it, which Foundation makes safe from
/// any thread; everything else is behind `state`.
final class ExitingProcess: @unchecked Sendable {
    private let process: Process
    private let workDirectory: String
    private let state = Mutex<(exited: Bool, removeDirectory: Bool)>((false, false))

    init(_ process: Process, workDirectory: String) {
        self.process = process
        self.workDirectory = workDirectory
    }

    var hasExited: Bool { state.withLock { $0.exited } }

    /// Asks for the work directory to be removed after the exit; `false` if it already happened.
    func removeWhenDone() -> Bool {
        state.withLock { state in
            guard !state.exited else { return false }
            state.removeDirectory = true
            return true
        }
    }

    /// Blocks until the process exited (SIGKILL after 10 s). Run on a thread of its own.
    func finish() {
        let deadline = ContinuousClock.now + .seconds(10)
        while process.isRunning, ContinuousClock.now < deadline { usleep(5_000) }
        if process.isRunning {
            Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        let remove = state.withLock { state -> Bool in
            state.exited = true
            return state.removeDirectory
        }
        if remove { try? FileManager.default.removeItem(atPath: workDirectory) }
    }
}
