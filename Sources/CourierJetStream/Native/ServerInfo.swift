#if NATS
import CourierCore

#if canImport(Glibc)
import Glibc
#endif

/// What a nats-server says about itself in the `INFO` line it sends every new client: its
/// version (which decides the JetStream features Courier may use), name, cluster and maximum
/// payload. cnats 3.4.1 keeps the INFO it received to itself, so Courier reads the line from a
/// short connection of its own to the server the client is connected to.
struct ServerInfo: Sendable, Hashable {
    var version: String
    var name: String
    var cluster: String?
    var maxPayload: Int
    var jetStream: Bool

    /// The version as (major, minor, patch); zeros where it does not parse.
    var versionNumbers: (Int, Int, Int) {
        let core = version.split(separator: "-").first ?? ""
        let parts = core.split(separator: ".").map { Int($0) ?? 0 } + [0, 0, 0]
        return (parts[0], parts[1], parts[2])
    }

    /// Whether the server is at least `major.minor`.
    func isAtLeast(_ major: Int, _ minor: Int) -> Bool {
        let (a, b, _) = versionNumbers
        return (a, b) >= (major, minor)
    }

    /// Parses `INFO {…}`.
    init?(line: String) {
        guard line.hasPrefix("INFO "), let json = try? JSONValue(parsing: String(line.dropFirst(5))) else {
            return nil
        }
        guard let version = json["version"]?.stringValue else { return nil }
        self.version = version
        name = json["server_name"]?.stringValue ?? json["server_id"]?.stringValue ?? ""
        cluster = json["cluster"]?.stringValue
        maxPayload = Int(json["max_payload"]?.intValue ?? 0)
        jetStream = json["jetstream"]?.boolValue ?? false
    }

    /// Reads the INFO line of the server at `url` (blocking, at most `timeout`); `nil` when it
    /// cannot be read.
    static func read(url: String, timeout: Duration) -> ServerInfo? {
        guard let (host, port) = hostAndPort(url) else { return nil }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var results: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &results) == 0, let first = results else { return nil }
        defer { freeaddrinfo(results) }
        let fd = socket(first.pointee.ai_family, first.pointee.ai_socktype, first.pointee.ai_protocol)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let micros = max(1, timeout.milliseconds * 1000)
        var limit = timeval(tv_sec: Int(micros / 1_000_000), tv_usec: Int(micros % 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        guard connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else { return nil }
        var line: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while line.count < 64 * 1024 {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            guard n > 0 else { return nil }
            line.append(contentsOf: chunk[0..<n])
            if let end = line.firstIndex(of: UInt8(ascii: "\n")) {
                return ServerInfo(
                    line: String(decoding: line[..<end], as: UTF8.self).trimmingSuffix("\r"))
            }
        }
        return nil
    }

    /// `(host, port)` of `nats://[user[:pass]@]host[:port]` (also `tls://`, IPv6 in brackets).
    static func hostAndPort(_ url: String) -> (String, Int)? {
        var rest = Substring(url)
        if let scheme = rest.firstRange(of: "://") { rest = rest[scheme.upperBound...] }
        if let at = rest.lastIndex(of: "@") { rest = rest[rest.index(after: at)...] }
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") {
            let host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            let port = after.hasPrefix(":") ? Int(after.dropFirst()) : 4222
            return port.map { (host, $0) }
        }
        if let colon = rest.lastIndex(of: ":") {
            guard let port = Int(rest[rest.index(after: colon)...]) else { return nil }
            return (String(rest[..<colon]), port)
        }
        return rest.isEmpty ? nil : (String(rest), 4222)
    }
}

extension String {
    fileprivate func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}
#endif
