#if NATS
public import CourierCore
import Foundation
import Logging
import Synchronization

/// An `EventBus`'s subscriber registry in a JetStream key-value bucket, shared by every
/// instance of a service: each registration is one key (`subscriptions.<subscriber id>`), each
/// change is written only if the key is still at the revision it was read at (a writer that lost
/// the race reads again and retries, so concurrent writers never lose each other's change), and
/// ``watch()`` lets every instance follow the changes the others make
/// (`EventBus.followRegistry()`, or the bus as a service).
///
/// ```swift
/// var configuration = EventBus.Configuration()
/// configuration.stateStore = try await JetStreamKVStateStore.open(provider: provider)
/// let bus = EventBus(pipeline: provider, configuration: configuration)
/// let following = Task { try await bus.followRegistry() }  // or run the bus as a service
/// ```
///
/// The bucket is replicated like the event stream (R3 on a 3-node cluster) unless told
/// otherwise, and — like the streams — created when missing and never changed when it exists.
public final class JetStreamKVStateStore: StateStore {
    /// The bucket's name.
    public let bucket: String
    private let store: KeyValueBucket
    private let logger: Logger
    private let requestTimeout: Duration
    /// How long one change keeps retrying retryable failures before it throws.
    public let changeTimeout: Duration

    /// How many times one change is retried when other writers keep changing the same key first.
    static let maxAttempts = 32

    private init(
        bucket: String, store: KeyValueBucket, logger: Logger, requestTimeout: Duration, changeTimeout: Duration
    ) {
        self.bucket = bucket
        self.changeTimeout = changeTimeout
        self.store = store
        self.logger = logger
        self.requestTimeout = requestTimeout
    }

    /// Opens `bucket` on `provider`'s connection, creating it when it is missing and the
    /// provider's ``JetStreamProvider/Configuration/provisioning`` allows: file storage, one
    /// revision per key, `replicas` (by default the event stream's). An existing bucket is used
    /// as it is. One change keeps retrying retryable failures for `changeTimeout`.
    ///
    /// - Throws: `invalidConfiguration` for a bucket name other than letters, digits, `-` and
    ///   `_`; `notFound` when the bucket is missing and may not be created; a connection error.
    public static func open(
        provider: JetStreamProvider,
        bucket: String = "COURIER_REGISTRY",
        replicas: Int? = nil,
        changeTimeout: Duration = .seconds(30)
    ) async throws -> JetStreamKVStateStore {
        guard !bucket.isEmpty,
            bucket.utf8.allSatisfy({ Self.isPlainKeyByte($0) })
        else {
            throw CourierError(
                .invalidConfiguration, "a bucket name is letters, digits, '-' and '_'",
                input: CourierError.abbreviated(bucket))
        }
        let replicas = replicas ?? provider.eventStream.replicas
        guard (1...5).contains(replicas) else {
            throw CourierError(.invalidConfiguration, "replicas must be 1 to 5, not \(replicas)", input: bucket)
        }
        let store = try await provider.blocking { provider in
            try KeyValueBucket(
                name: bucket, replicas: replicas, mayCreate: provider.configuration.provisioning.mayCreate,
                connection: provider.connection)
        }
        return JetStreamKVStateStore(
            bucket: bucket, store: store, logger: provider.configuration.logger,
            requestTimeout: provider.configuration.requestTimeout, changeTimeout: changeTimeout)
    }

    /// The key of `subscriberID`'s registration: letters, digits, `-` and `_` as they are, every
    /// other byte as `=` and two hex digits (key names allow few characters).
    static func key(for subscriberID: String) -> String {
        var key = "subscriptions."
        for byte in subscriberID.utf8 {
            if isPlainKeyByte(byte) {
                key.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                key += "=" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return key
    }

    private static func isPlainKeyByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
            true
        default: false
        }
    }

    /// Applies `change`: an upsert is written against the revision just read and retried when
    /// another writer got there first; a removal writes a delete marker. A retryable failure (no
    /// responders while the bucket elects a leader, a timeout, a reconnect) is retried until
    /// ``changeTimeout`` has passed.
    public func apply(_ change: SubscriptionChange) async throws {
        let store = self.store
        let deadline = ContinuousClock.now + changeTimeout
        switch change {
        case .upsert(let filter):
            let key = Self.key(for: filter.subscriberID)
            let value = Array(try JSONEncoder().encode(filter))
            try await Blocking.run {
                var conflicts = 0
                try Self.retrying(until: deadline) {
                    while true {
                        let current = try store.get(key)
                        do {
                            try store.put(key, value, ifRevision: current?.revision)
                            return
                        } catch let error as CourierError where error.code == .wrongLastSequence {
                            conflicts += 1
                            guard conflicts < Self.maxAttempts else { throw error }
                        }
                    }
                }
            }
        case .remove(let subscriberID):
            let key = Self.key(for: subscriberID)
            try await Blocking.run { try Self.retrying(until: deadline) { try store.delete(key) } }
        }
    }

    /// Runs `body` (blocking) again after a retryable failure, pausing 50 ms doubling to 1 s,
    /// until `deadline`; then the last failure is thrown.
    private static func retrying<T>(until deadline: ContinuousClock.Instant, _ body: () throws -> T) throws -> T {
        var pause = Duration.milliseconds(50)
        while true {
            do {
                return try body()
            } catch let error as CourierError where error.isRetryable && ContinuousClock.now + pause < deadline {
                Thread.sleep(forTimeInterval: Double(pause.milliseconds) / 1000)
                pause = min(pause * 2, .seconds(1))
            }
        }
    }

    public func load() async throws -> [SubscriptionFilter] {
        let store = self.store
        let timeout = requestTimeout
        let deadline = ContinuousClock.now + changeTimeout
        let entries = try await Blocking.run {
            try Self.retrying(until: deadline) { try store.entries(matching: "subscriptions.>", timeout: timeout) }
        }
        return entries.compactMap { decode($0) }
    }

    /// Every registration, first as stored now, then again after each change any instance
    /// makes. When the watch fails (the connection or the bucket's leader was lost for longer
    /// than cnats recovers from by itself) it is opened again, from the stored state, after a
    /// pause that doubles from 250 ms to 10 s. Ends when the consuming task is cancelled.
    public func watch() async throws -> AsyncThrowingStream<[SubscriptionFilter], any Error>? {
        let store = self.store
        let first = try await Blocking.run { try store.watch("subscriptions.>") }
        let (stream, continuation) = AsyncThrowingStream<[SubscriptionFilter], any Error>.makeStream(
            bufferingPolicy: .bufferingNewest(1))
        let following = WatchLoop(store: store, watcher: first, logger: logger)
        continuation.onTermination = { _ in following.stop() }
        Blocking.detach {
            following.run { registrations in
                continuation.yield(registrations.values.compactMap { self.decode($0) })
            }
            continuation.finish()
        }
        return stream
    }

    /// A stored registration, or `nil` (logged) when it is not one.
    private func decode(_ entry: KeyValueEntry) -> SubscriptionFilter? {
        do {
            return try JSONDecoder().decode(SubscriptionFilter.self, from: Data(entry.value))
        } catch {
            logger.warning(
                "skipping an unreadable registration",
                metadata: ["bucket": "\(bucket)", "key": "\(entry.key)", "error": "\(error)"])
            return nil
        }
    }
}

/// The thread that follows a bucket: rebuilds the registrations from a watcher's entries and
/// hands each complete state to `publish`, reopening the watcher when it fails.
private final class WatchLoop: Sendable {
    private let store: KeyValueBucket
    private let current: Mutex<KeyValueWatcher?>
    private let logger: Logger

    init(store: KeyValueBucket, watcher: KeyValueWatcher, logger: Logger) {
        self.store = store
        self.current = Mutex(watcher)
        self.logger = logger
    }

    /// Stops the loop: the watcher's waiting read returns and `run` ends.
    func stop() {
        current.withLock { watcher in
            watcher?.stop()
            watcher = nil
        }
    }

    func run(_ publish: ([String: KeyValueEntry]) -> Void) {
        var pause = Duration.milliseconds(250)
        while let watcher = current.withLock({ $0 }) {
            var entries: [String: KeyValueEntry] = [:]
            var caughtUp = false
            do {
                following: while true {
                    switch try watcher.next(timeout: .seconds(1)) {
                    case .entry(let entry):
                        entries[entry.key] = entry.isDeletion ? nil : entry
                        if caughtUp { publish(entries) }
                    case .caughtUp:
                        caughtUp = true
                        pause = .milliseconds(250)
                        publish(entries)
                    case .idle:
                        continue
                    case .stopped:
                        break following
                    }
                }
            } catch {
                logger.warning(
                    "watching the registry failed; watching again",
                    metadata: ["bucket": "\(store.name)", "error": "\(error)"])
            }
            // Stopped on purpose: done. Otherwise reopen after a pause (a failed reopen leaves the
            // stopped watcher in place, whose first read says so: the next round pauses again).
            guard current.withLock({ $0 === watcher }) else { return }
            watcher.stop()
            Thread.sleep(forTimeInterval: Double(pause.milliseconds) / 1000)
            pause = min(pause * 2, .seconds(10))
            let reopened = try? store.watch("subscriptions.>")
            let running = current.withLock { slot -> Bool in
                guard slot === watcher else { return false }
                if let reopened { slot = reopened }
                return true
            }
            if !running {
                reopened?.stop()
                return
            }
        }
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

#endif
