import Synchronization

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A subscriber's registration on an ``EventBus``: which subjects it wants and how.
public struct SubscriptionFilter: Sendable, Codable {
    /// The subscriber's id; durable consumer names derive from it.
    public var subscriberID: String
    /// Subject filters, NATS wildcards allowed.
    public var subjects: [String]
    /// Whether the subscriber keeps its position across restarts (durable consumers).
    public var durable: Bool
    /// Consumption options; `nil` uses the defaults.
    public var options: SubscribeOptions?

    /// Creates a registration.
    public init(subscriberID: String, subjects: [String], durable: Bool = true, options: SubscribeOptions? = nil) {
        self.subscriberID = subscriberID
        self.subjects = subjects
        self.durable = durable
        self.options = options
    }
}

/// One change to a subscriber registry.
public enum SubscriptionChange: Sendable {
    /// Adds or replaces the registration of `filter.subscriberID`.
    case upsert(SubscriptionFilter)
    /// Removes the registration of `subscriberID`.
    case remove(subscriberID: String)

    /// `registrations` with this change applied.
    public func applied(to registrations: [SubscriptionFilter]) -> [SubscriptionFilter] {
        switch self {
        case .upsert(let filter):
            registrations.filter { $0.subscriberID != filter.subscriberID } + [filter]
        case .remove(let subscriberID):
            registrations.filter { $0.subscriberID != subscriberID }
        }
    }
}

/// Persists an ``EventBus``'s subscriber registrations so a new process — or, with a shared
/// store, another instance — can restore them.
public protocol StateStore: Sendable {
    /// Applies one change to the stored registrations. A shared store applies it against the
    /// latest stored state (concurrent writers never lose each other's change).
    func apply(_ change: SubscriptionChange) async throws
    /// The stored registrations (empty when nothing was saved).
    func load() async throws -> [SubscriptionFilter]
    /// The stored registrations each time another writer changes them, for stores several
    /// instances share; `nil` for a store only this process writes.
    func watch() async throws -> AsyncThrowingStream<[SubscriptionFilter], any Error>?
}

extension StateStore {
    public func watch() async throws -> AsyncThrowingStream<[SubscriptionFilter], any Error>? { nil }
}

/// Keeps subscriptions in memory (lost with the process).
public final class MemoryStateStore: StateStore {
    private let stored = Mutex<[SubscriptionFilter]>([])

    /// Creates an empty store.
    public init() {}

    public func apply(_ change: SubscriptionChange) async throws { stored.withLock { $0 = change.applied(to: $0) } }
    public func load() async throws -> [SubscriptionFilter] { stored.withLock { $0 } }
}

/// Keeps subscriptions in a JSON file of this process, replaced atomically: written to a
/// temporary file in the same directory, flushed to disk, then renamed over the old one, so a
/// crash leaves either the old or the new file, never a torn one. For a registry several
/// instances share, use a shared store (the JetStream provider's `JetStreamKVStateStore`).
public struct FileStateStore: StateStore {
    /// The file path.
    public let path: String

    /// Creates a store at `path` (created on first save).
    public init(path: String) {
        self.path = path
    }

    public func apply(_ change: SubscriptionChange) async throws {
        try save(change.applied(to: try await load()))
    }

    /// Replaces the stored registrations with `subscriptions`.
    public func save(_ subscriptions: [SubscriptionFilter]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(subscriptions.sorted { $0.subscriberID < $1.subscriberID })
        try Self.atomicWrite(Array(data), to: path)
    }

    public func load() async throws -> [SubscriptionFilter] {
        guard let bytes = try Self.read(path) else { return [] }
        do {
            return try JSONDecoder().decode([SubscriptionFilter].self, from: Data(bytes))
        } catch {
            throw CourierError(
                .storageFailed, "state file \(path) is not valid subscription JSON: \(error)", input: path)
        }
    }

    /// Writes `bytes` to `path` atomically (temporary file, fsync, rename, fsync of the directory).
    /// Each write has its own temporary file, so concurrent writers never share one; the last
    /// rename wins whole.
    package static func atomicWrite(_ bytes: [UInt8], to path: String) throws {
        let temporary = path + ".tmp-\(getpid())-\(Hex.encode64(UInt64.random(in: 1...UInt64.max)))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else { throw posixError("cannot create", temporary) }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, bytes.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                let error = posixError("cannot write", temporary)
                close(fd)
                unlink(temporary)
                throw error
            }
            written += n
        }
        guard fsync(fd) == 0 else {
            let error = posixError("cannot flush", temporary)
            close(fd)
            unlink(temporary)
            throw error
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let error = posixError("cannot rename to \(path)", temporary)
            unlink(temporary)
            throw error
        }
        let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        let dfd = open(directory.isEmpty ? "/" : directory, O_RDONLY)
        if dfd >= 0 {
            fsync(dfd)
            close(dfd)
        }
    }

    /// The bytes of `path`, `nil` when it does not exist.
    package static func read(_ path: String) throws -> [UInt8]? {
        let fd = open(path, O_RDONLY)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw posixError("cannot open", path)
        }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw posixError("cannot read", path)
            }
            if n == 0 { return out }
            out.append(contentsOf: chunk[0..<n])
        }
    }

    private static func posixError(_ what: String, _ path: String) -> CourierError {
        CourierError(.storageFailed, "\(what) \(path): \(String(cString: strerror(errno)))", input: path)
    }
}
