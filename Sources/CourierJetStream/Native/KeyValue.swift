#if NATS
internal import CNATS
import CourierCore
import Synchronization

/// One entry read from a key-value bucket.
struct KeyValueEntry: Sendable {
    var key: String
    var value: [UInt8]
    var revision: UInt64
    /// Whether the entry is a delete or purge marker.
    var isDeletion: Bool
}

/// A JetStream key-value bucket over cnats' `kvStore`. Every call blocks: run it through
/// ``Blocking``.
///
/// `@unchecked Sendable`: `store` is set once in `init` and destroyed in `deinit`, when no other
/// reference — and so no call — is left; cnats' `kvStore` functions are safe to call from several
/// threads (they only publish and request on the connection, which cnats locks). The connection is
/// kept alive as long as the bucket.
final class KeyValueBucket: @unchecked Sendable {
    let name: String
    private let store: OpaquePointer
    private let connection: NATSConnection

    /// Binds to `name`, creating it (file storage, `replicas`, one revision per key) when it does
    /// not exist and `mayCreate`. An existing bucket is used as it is.
    init(name: String, replicas: Int, mayCreate: Bool, connection: NATSConnection) throws {
        var store: OpaquePointer?
        var status = js_KeyValue(&store, connection.context, name)
        if status == NATS_NOT_FOUND || (status != NATS_OK && natsLastErrorText().contains("not found")) {
            guard mayCreate else {
                throw CourierError(
                    .notFound, "key-value bucket \(name) does not exist and provisioning is requireExisting",
                    input: name)
            }
            let arena = CStringArena()
            var config = kvConfig()
            kvConfig_Init(&config)
            config.Bucket = arena.c(name)
            config.Description = arena.c("Courier subscriber registry")
            config.History = 1
            config.StorageType = js_FileStorage
            config.Replicas = Int32(replicas)
            store = nil
            status = js_CreateKeyValue(&store, connection.context, &config)
        }
        guard status == NATS_OK, let store else {
            throw CourierError.nats(
                status, "cannot open key-value bucket \(name)", input: name, detail: natsLastErrorText())
        }
        self.name = name
        self.store = store
        self.connection = connection
    }

    deinit { kvStore_Destroy(store) }

    /// The latest value of `key`, `nil` when it has none or was deleted.
    func get(_ key: String) throws -> KeyValueEntry? {
        var entry: OpaquePointer?
        let status = kvStore_Get(&entry, store, key)
        if status == NATS_NOT_FOUND { return nil }
        guard status == NATS_OK, let entry else {
            throw CourierError.nats(
                status, "cannot read key \(key) of bucket \(name)", input: key, detail: natsLastErrorText())
        }
        defer { kvEntry_Destroy(entry) }
        return Self.entry(entry)
    }

    /// Stores `value` under `key` only when the key's latest revision is still `revision`
    /// (`nil`: when the key has no value). A newer revision throws `wrongLastSequence`.
    @discardableResult
    func put(_ key: String, _ value: [UInt8], ifRevision revision: UInt64?) throws -> UInt64 {
        var stored: UInt64 = 0
        let status = value.withUnsafeBytes { bytes in
            if let revision {
                kvStore_Update(&stored, store, key, bytes.baseAddress, Int32(bytes.count), revision)
            } else {
                kvStore_Create(&stored, store, key, bytes.baseAddress, Int32(bytes.count))
            }
        }
        guard status == NATS_OK else {
            let detail = natsLastErrorText()
            // cnats reports the server's refusal of the expected revision only in the error text.
            if detail.contains("wrong last sequence") || detail.contains("key exists") {
                throw CourierError(
                    .wrongLastSequence, "key \(key) of bucket \(name) changed since it was read: \(detail)",
                    input: key)
            }
            throw CourierError.nats(status, "cannot write key \(key) of bucket \(name)", input: key, detail: detail)
        }
        return stored
    }

    /// Deletes `key` (a delete marker, which watchers see).
    func delete(_ key: String) throws {
        let status = kvStore_Delete(store, key)
        guard status == NATS_OK else {
            throw CourierError.nats(
                status, "cannot delete key \(key) of bucket \(name)", input: key, detail: natsLastErrorText())
        }
    }

    /// Every key matching `keys` with its latest value, read through a watcher that stops after
    /// the initial values.
    func entries(matching keys: String, timeout: Duration) throws -> [KeyValueEntry] {
        let watcher = try watch(keys)
        defer { watcher.stop() }
        var entries: [String: KeyValueEntry] = [:]
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            switch try watcher.next(timeout: .milliseconds(250)) {
            case .entry(let entry):
                entries[entry.key] = entry.isDeletion ? nil : entry
            case .caughtUp, .stopped:
                return entries.values.sorted { $0.revision < $1.revision }
            case .idle:
                continue
            }
        }
        throw CourierError(
            .timeout, "bucket \(name) did not list its keys within \(timeout)", input: name, isRetryable: true)
    }

    /// A watcher over `keys` (wildcards allowed): first each key's latest value, then a
    /// ``KeyValueWatcher/Next/caughtUp``, then every change.
    func watch(_ keys: String) throws -> KeyValueWatcher {
        var options = kvWatchOptions()
        kvWatchOptions_Init(&options)
        var watcher: OpaquePointer?
        let status = kvStore_Watch(&watcher, store, keys, &options)
        guard status == NATS_OK, let watcher else {
            throw CourierError.nats(
                status, "cannot watch bucket \(name)", input: keys, detail: natsLastErrorText())
        }
        return KeyValueWatcher(watcher: watcher, bucket: self)
    }

    fileprivate static func entry(_ entry: OpaquePointer) -> KeyValueEntry {
        let length = Int(kvEntry_ValueLen(entry))
        var value: [UInt8] = []
        if length > 0, let bytes = kvEntry_Value(entry) {
            value = Array(UnsafeRawBufferPointer(start: bytes, count: length))
        }
        let operation = kvEntry_Operation(entry)
        return KeyValueEntry(
            key: String(cString: kvEntry_Key(entry)),
            value: value,
            revision: kvEntry_Revision(entry),
            isDeletion: operation == kvOp_Delete || operation == kvOp_Purge)
    }
}

/// A running `kvWatcher`.
///
/// `@unchecked Sendable`: the watcher pointer lives in a `Mutex`; `next` is called from one
/// thread at a time (the watching loop), outside the lock because it blocks, and `kvWatcher_Stop`
/// — the one call cnats allows concurrently with a waiting `kvWatcher_Next` — wakes it. The
/// pointer is destroyed under the lock, once, by `stop()`, after which `next` no longer touches it.
final class KeyValueWatcher: @unchecked Sendable {
    /// What ``next(timeout:)`` found.
    enum Next {
        case entry(KeyValueEntry)
        /// Every initial value was delivered; what follows are changes.
        case caughtUp
        /// Nothing arrived within the timeout.
        case idle
        /// The watcher was stopped.
        case stopped
    }

    /// The watcher's address (a plain integer, so the state is `Sendable`).
    private struct State {
        var address: UInt?
        var pointer: OpaquePointer? {
            get { address.flatMap { OpaquePointer(bitPattern: $0) } }
            set { address = newValue.map { UInt(bitPattern: $0) } }
        }
        var waiting = false
        var stopped = false
    }

    private let state: Mutex<State>
    private let bucket: KeyValueBucket

    fileprivate init(watcher: OpaquePointer, bucket: KeyValueBucket) {
        self.state = Mutex(State(address: UInt(bitPattern: watcher)))
        self.bucket = bucket
    }

    deinit { stop() }

    /// Waits up to `timeout` for the next entry (blocking). Called by one thread at a time.
    func next(timeout: Duration) throws -> Next {
        let address = state.withLock { state -> UInt? in
            guard !state.stopped, let address = state.address else { return nil }
            state.waiting = true
            return address
        }
        guard let address, let pointer = OpaquePointer(bitPattern: address) else { return .stopped }
        defer {
            state.withLock { state in
                state.waiting = false
                // Stopped while waiting: the destroy `stop()` left to us.
                if state.stopped, let pointer = state.pointer {
                    kvWatcher_Destroy(pointer)
                    state.pointer = nil
                }
            }
        }
        var entry: OpaquePointer?
        let status = kvWatcher_Next(&entry, pointer, max(1, timeout.milliseconds))
        switch status {
        case NATS_OK:
            guard let entry else { return .caughtUp }
            defer { kvEntry_Destroy(entry) }
            return .entry(KeyValueBucket.entry(entry))
        case NATS_TIMEOUT:
            return .idle
        case NATS_ILLEGAL_STATE:
            return .stopped
        default:
            throw CourierError.nats(
                status, "watching bucket \(bucket.name) failed", input: bucket.name, detail: natsLastErrorText())
        }
    }

    /// Stops the watcher: a waiting ``next(timeout:)`` returns ``Next/stopped``. The cnats watcher
    /// is destroyed here, or by that `next` once it returns.
    func stop() {
        state.withLock { state in
            guard !state.stopped, let pointer = state.pointer else { return }
            state.stopped = true
            _ = kvWatcher_Stop(pointer)
            if !state.waiting {
                kvWatcher_Destroy(pointer)
                state.pointer = nil
            }
        }
    }
}

#endif
