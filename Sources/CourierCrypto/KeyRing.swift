#if Encryption
import CourierCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A 256-bit AES key with an id. The key bytes never appear in descriptions or errors.
public struct EncryptionKey: Sendable, CustomStringConvertible {
    /// The id written into every envelope this key encrypts.
    public let id: String
    let bytes: [UInt8]

    /// Wraps 32 key bytes. Without an id, the id is `k` and the first 8 hex digits of the key's
    /// SHA-256 (a fingerprint that reveals nothing usable about the key).
    ///
    /// - Throws: `CourierError/Code/invalidKey` when the key is not 32 bytes or the id is empty.
    public init(bytes: [UInt8], id: String? = nil) throws {
        guard bytes.count == AESGCM.keyLength else {
            throw CourierError(.invalidKey, "an AES-256 key must be 32 bytes, got \(bytes.count)", input: id ?? "key")
        }
        let id = id ?? "k" + Hex.encode(AESGCM.sha256(bytes).prefix(4))
        guard !id.isEmpty, !id.contains(where: { $0.isWhitespace }) else {
            throw CourierError(.invalidKey, "a key id must be non-empty without whitespace", input: id)
        }
        self.id = id
        self.bytes = bytes
    }

    /// A new random key from the OpenSSL RNG.
    public static func generate(id: String? = nil) throws -> EncryptionKey {
        try EncryptionKey(bytes: AESGCM.randomBytes(AESGCM.keyLength), id: id)
    }

    /// Parses key material: 32 raw bytes, 64 hex digits, or standard base64 of 32 bytes
    /// (surrounding whitespace ignored). `source` names where it came from, for errors.
    public static func parse(_ material: [UInt8], id: String? = nil, source: String) throws -> EncryptionKey {
        if material.count == AESGCM.keyLength { return try EncryptionKey(bytes: material, id: id) }
        let text = String(decoding: material, as: UTF8.self).trimmingWhitespace
        if text.utf8.count == 64, let bytes = Hex.decode(text) { return try EncryptionKey(bytes: bytes, id: id) }
        if let bytes = Base64.decode(text), bytes.count == AESGCM.keyLength {
            return try EncryptionKey(bytes: bytes, id: id)
        }
        throw CourierError(
            .invalidKey,
            "key from \(source) is neither 32 raw bytes, 64 hex digits nor base64 of 32 bytes",
            input: source
        )
    }

    /// Loads a key from a file (raw, hex or base64).
    public static func load(file path: String, id: String? = nil) throws -> EncryptionKey {
        guard let material = readFile(path) else {
            throw CourierError(.invalidKey, "cannot read key file \(path)", input: path)
        }
        return try parse(material, id: id, source: path)
    }

    /// Loads a key from an environment variable (hex or base64).
    public static func load(environment name: String, id: String? = nil) throws -> EncryptionKey {
        guard let value = getenv(name) else {
            throw CourierError(.invalidKey, "environment variable \(name) is not set", input: name)
        }
        return try parse(Array(String(cString: value).utf8), id: id, source: "$\(name)")
    }

    /// Hex text of the key, for `courier keygen` to write out. Handle with care.
    public var hexMaterial: String { Hex.encode(bytes) }

    public var description: String { "EncryptionKey(id: \(id), 256 bits)" }

    private static func readFile(_ path: String) -> [UInt8]? {
        guard let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&chunk, 1, chunk.count, file)
            if n > 0 { out.append(contentsOf: chunk[0..<n]) }
            if n < chunk.count { break }
        }
        return out
    }
}

extension String {
    fileprivate var trimmingWhitespace: String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }
}

/// The keys an encryptor may use, changed at runtime without rebuilding anything: add keys,
/// rotate which one encrypts, retire old ones. Old keys keep decrypting until retired.
public final class KeyRing: Sendable {
    private struct State {
        var keys: [String: EncryptionKey] = [:]
        var active: String?
        var retired: Set<String> = []
    }

    private let state = Mutex(State())

    /// A ring holding `keys`; the first becomes the active (encrypting) key.
    public init(_ keys: [EncryptionKey] = []) throws {
        for key in keys { try add(key) }
    }

    /// Adds a key for decryption; the first key added becomes active.
    ///
    /// - Throws: `CourierError/Code/alreadyExists` for an id already present with other bytes.
    public func add(_ key: EncryptionKey) throws {
        try state.withLock { state in
            if let existing = state.keys[key.id], existing.bytes != key.bytes {
                throw CourierError(
                    .alreadyExists, "key id '\(key.id)' is already used by a different key", input: key.id)
            }
            state.keys[key.id] = key
            state.retired.remove(key.id)
            if state.active == nil { state.active = key.id }
        }
    }

    /// Makes `id` the key that encrypts from now on.
    ///
    /// - Throws: `CourierError/Code/notFound` for an unknown or retired id.
    public func rotate(to id: String) throws {
        try state.withLock { state in
            guard state.keys[id] != nil, !state.retired.contains(id) else {
                throw CourierError(.notFound, "cannot rotate to key '\(id)': it is not in the key ring", input: id)
            }
            state.active = id
        }
    }

    /// Adds `key` and makes it active.
    public func rotate(to key: EncryptionKey) throws {
        try add(key)
        try rotate(to: key.id)
    }

    /// Stops `id` from decrypting (and encrypting). The active key cannot be retired.
    ///
    /// - Throws: `CourierError/Code/notFound` or `CourierError/Code/invalidKey`.
    public func retire(_ id: String) throws {
        try state.withLock { state in
            guard state.keys[id] != nil else {
                throw CourierError(.notFound, "cannot retire key '\(id)': it is not in the key ring", input: id)
            }
            guard state.active != id else {
                throw CourierError(
                    .invalidKey, "cannot retire the active key '\(id)'; rotate to another key first", input: id)
            }
            state.keys[id] = nil
            state.retired.insert(id)
        }
    }

    /// The id of the key that encrypts.
    public var activeKeyID: String? { state.withLock { $0.active } }

    /// The ids of every key that decrypts, sorted.
    public var keyIDs: [String] { state.withLock { $0.keys.keys.sorted() } }

    /// The active key.
    func activeKey() throws -> EncryptionKey {
        try state.withLock { state in
            guard let id = state.active, let key = state.keys[id] else {
                throw CourierError(.encryptionFailed, "the key ring has no active key", input: "KeyRing")
            }
            return key
        }
    }

    /// The key `id`, or why it cannot be used.
    func key(_ id: String) throws -> EncryptionKey {
        try state.withLock { state in
            if let key = state.keys[id] { return key }
            if state.retired.contains(id) {
                throw CourierError(.decryptionFailed, "key '\(id)' is retired", input: id)
            }
            throw CourierError(.decryptionFailed, "unknown key id '\(id)'", input: id)
        }
    }
}
#endif
