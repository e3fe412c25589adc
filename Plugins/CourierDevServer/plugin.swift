import Foundation
import PackagePlugin

/// `swift package courier-dev-server [start|stop|status] [--port N]`: a local `nats-server -js`
/// for development, its store, log and PID file under `.build/courier-dev-server/`.
@main
struct CourierDevServer: CommandPlugin {
    func performCommand(context: PluginContext, arguments: [String]) async throws {
        let directory = context.package.directoryURL.appendingPathComponent(".build/courier-dev-server")
        let server = DevServer(directory: directory)
        var extractor = ArgumentExtractor(arguments)
        let port = extractor.extractOption(named: "port").last.flatMap(Int.init) ?? 4222
        let verbs = extractor.remainingArguments
        switch verbs.first ?? "status" {
        case "start": try server.start(port: port)
        case "stop": try server.stop()
        case "status": server.status()
        default:
            throw DevServerError("unknown command '\(verbs[0])'; use start, stop or status")
        }
    }
}

struct DevServerError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

struct DevServer {
    let directory: URL
    var pidFile: URL { directory.appendingPathComponent("nats-server.pid") }
    var urlFile: URL { directory.appendingPathComponent("url") }
    var logFile: URL { directory.appendingPathComponent("nats-server.log") }

    /// The PID of the running server, if the PID file names a live process.
    var runningPID: Int32? {
        guard let text = try? String(contentsOf: pidFile, encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)),
            kill(pid, 0) == 0
        else { return nil }
        return pid
    }

    func executable() throws -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let candidates =
            path.split(separator: ":").map { "\($0)/nats-server" } + ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw DevServerError(
                "nats-server not found; install it with `sudo apt-get install nats-server` (or scripts/bootstrap.sh)")
        }
        return found
    }

    func start(port: Int) throws {
        if runningPID != nil {
            status()
            return
        }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try? FileManager.default.removeItem(at: logFile)
        // bash closes every descriptor the plugin inherited (SwiftPM waits for its pipes to
        // close) and setsid detaches the server from the plugin's session, so it outlives it.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [
            "-c",
            #"for fd in $(ls /proc/$$/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done; exec setsid "$0" "$@" </dev/null >/dev/null 2>&1"#,
            try executable(), "-js", "-a", "127.0.0.1", "-p", String(port),
            "-sd", directory.appendingPathComponent("store").path, "-l", logFile.path, "-P", pidFile.path,
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            let log = (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
            if log.contains("Server is ready") {
                let url = "nats://127.0.0.1:\(port)"
                try Data((url + "\n").utf8).write(to: urlFile)
                print(
                    "nats-server -js running (pid \(runningPID.map(String.init) ?? "?"), store \(directory.appendingPathComponent("store").path))"
                )
                print(url)
                return
            }
            if log.contains("[FTL]") || log.contains("[ERR]") {
                throw DevServerError("nats-server did not start:\n\(log)")
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw DevServerError("nats-server did not report ready within 10 s; see \(logFile.path)")
    }

    func stop() throws {
        guard let pid = runningPID else {
            print("no courier dev server running")
            return
        }
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(10)
        while kill(pid, 0) == 0, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        try? FileManager.default.removeItem(at: pidFile)
        try? FileManager.default.removeItem(at: urlFile)
        print("stopped nats-server (pid \(pid))")
    }

    func status() {
        if let pid = runningPID, let url = try? String(contentsOf: urlFile, encoding: .utf8) {
            print("nats-server -js running (pid \(pid))")
            print(url.trimmingCharacters(in: .whitespacesAndNewlines))
        } else {
            print("no courier dev server running")
        }
    }
}
