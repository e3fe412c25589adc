public import CourierCore
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Talks to a server on 127.0.0.1 with a plain blocking socket, for test harnesses that must not
/// depend on the code under test: an HTTP GET of nats-server's monitoring endpoints, and one NATS
/// request/reply (JetStream API calls such as a leader step-down). Every read and write is
/// bounded by `timeout`, so a frozen (SIGSTOP) server makes a call fail, never hang.
public enum LoopbackClient {
    /// GETs `path` from the HTTP server on `port` and parses the body as JSON.
    ///
    /// - Throws: ``CourierTestingError`` when the server does not answer within `timeout` or
    ///   answers with something other than a JSON body.
    public static func getJSON(port: Int, path: String, timeout: Duration = .seconds(2)) async throws -> JSONValue {
        let (_, body) = try await get(port: port, path: path, timeout: timeout)
        do {
            return try JSONValue(parsing: body)
        } catch {
            throw CourierTestingError("GET \(path) on port \(port): \(body.prefix(200))")
        }
    }

    /// GETs `path` from the HTTP server on `port`: the status code and the body.
    ///
    /// - Throws: ``CourierTestingError`` when the server does not answer within `timeout` or the
    ///   answer is not HTTP.
    public static func get(port: Int, path: String, timeout: Duration = .seconds(2)) async throws
        -> (status: Int, body: String)
    {
        try await offPool {
            let socket = try Connection(port: port, timeout: timeout)
            defer { socket.close() }
            try socket.write("GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            let response = try socket.readToEnd()
            guard let split = response.firstRange(of: Array("\r\n\r\n".utf8)) else {
                throw CourierTestingError("GET \(path) on port \(port): no HTTP body")
            }
            let head = String(decoding: response[..<split.lowerBound], as: UTF8.self)
            let statusField = head.split(separator: " ").dropFirst().first
            guard let status = statusField.flatMap({ Int($0) }) else {
                throw CourierTestingError("GET \(path) on port \(port): not an HTTP answer: \(head.prefix(100))")
            }
            return (status, String(decoding: response[split.upperBound...], as: UTF8.self))
        }
    }

    /// Sends one NATS request to `subject` on the server at `port` and returns the reply body.
    ///
    /// - Throws: ``CourierTestingError`` when no reply arrives within `timeout` (or the server
    ///   answers "no responders").
    public static func request(port: Int, subject: String, payload: String = "", timeout: Duration = .seconds(5))
        async throws -> String
    {
        try await offPool {
            let socket = try Connection(port: port, timeout: timeout)
            defer { socket.close() }
            let inbox = "_INBOX.harness\(UInt32.random(in: 0...UInt32.max))"
            try socket.write(
                #"CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"lang":"courier-testing"}"#
                    + "\r\nSUB \(inbox) 1\r\nPUB \(subject) \(inbox) \(payload.utf8.count)\r\n\(payload)\r\nPING\r\n")
            var buffer: [UInt8] = []
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                guard let line = socket.readLine(into: &buffer) else { continue }
                if line.hasPrefix("MSG ") || line.hasPrefix("HMSG ") {
                    let fields = line.split(separator: " ")
                    guard let total = Int(fields.last ?? "") else { continue }
                    let headerBytes = line.hasPrefix("HMSG ") ? Int(fields[fields.count - 2]) ?? 0 : 0
                    let body = try socket.read(count: total + 2, into: &buffer)
                    let headers = String(decoding: body.prefix(headerBytes), as: UTF8.self)
                    if headers.contains(" 503") {
                        throw CourierTestingError("request to \(subject): no responders")
                    }
                    return String(decoding: body[headerBytes..<total], as: UTF8.self)
                }
                if line.hasPrefix("PING") { try socket.write("PONG\r\n") }
                if line.hasPrefix("-ERR") { throw CourierTestingError("request to \(subject): \(line)") }
            }
            throw CourierTestingError("request to \(subject) on port \(port): no reply within \(timeout)")
        }
    }

    /// A blocking TCP connection to 127.0.0.1 with send and receive timeouts.
    final class Connection {
        private let fd: Int32
        private let port: Int

        init(port: Int, timeout: Duration) throws {
            self.port = port
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw CourierTestingError("socket() failed") }
            let micros = max(
                1, timeout.components.seconds * 1_000_000 + timeout.components.attoseconds / 1_000_000_000_000)
            var limit = timeval(tv_sec: Int(micros / 1_000_000), tv_usec: Int(micros % 1_000_000))
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard connected == 0 else {
                Glibc.close(fd)
                throw CourierTestingError("cannot connect to 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
            }
        }

        func write(_ text: String) throws {
            let bytes = Array(text.utf8)
            var sent = 0
            while sent < bytes.count {
                let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, bytes.count - sent, 0) }
                guard n > 0 else { throw CourierTestingError("write to 127.0.0.1:\(port) failed or timed out") }
                sent += n
            }
        }

        /// One read into `buffer`; `false` at end of stream.
        private func fill(_ buffer: inout [UInt8]) throws -> Bool {
            var chunk = [UInt8](repeating: 0, count: 16 * 1024)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n == 0 { return false }
            guard n > 0 else { throw CourierTestingError("read from 127.0.0.1:\(port) failed or timed out") }
            buffer.append(contentsOf: chunk[0..<n])
            return true
        }

        func readToEnd() throws -> [UInt8] {
            var buffer: [UInt8] = []
            while try fill(&buffer) {}
            return buffer
        }

        /// The next CRLF-terminated line (without it), removed from `buffer`; `nil` if none yet.
        func readLine(into buffer: inout [UInt8]) -> String? {
            if let end = buffer.firstRange(of: [13, 10]) {
                let line = String(decoding: buffer[..<end.lowerBound], as: UTF8.self)
                buffer.removeSubrange(..<end.upperBound)
                return line
            }
            _ = try? fill(&buffer)
            return nil
        }

        /// Exactly `count` bytes, removed from `buffer`.
        func read(count: Int, into buffer: inout [UInt8]) throws -> [UInt8] {
            while buffer.count < count {
                guard try fill(&buffer) else { throw CourierTestingError("connection to port \(port) closed") }
            }
            defer { buffer.removeSubrange(..<count) }
            return Array(buffer[..<count])
        }

        func close() { Glibc.close(fd) }
    }
}
