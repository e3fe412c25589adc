#if Routing
public import CourierCore
public import Logging
import Synchronization

/// Where a trigger delivers events.
public protocol EventSink: Sendable {
    /// A short description for logs and metrics.
    var description: String { get }
    /// Delivers `event`; may return a reply event for the broker to publish. Throwing means the
    /// delivery failed and may be retried.
    func deliver(_ event: Event) async throws -> Event?
}

/// Republishes events to another subject through a provider. The republished event gets a
/// deterministic id (from the original id and the target subject), which is also its dedupe id,
/// so a retried or redelivered route never stores it twice. Its hop count
/// (``Broker/hopsMetadataKey``) is one more than the original's, so republish loops end.
public struct TopicSink: EventSink {
    /// The provider to publish through.
    public let provider: any EventProvider
    /// The target subject.
    public let subject: String

    /// A sink publishing to `subject` (validated).
    public init(provider: any EventProvider, subject: String) throws {
        try Subjects.validate(subject)
        self.provider = provider
        self.subject = subject
    }

    public var description: String { "topic(\(subject))" }

    public func deliver(_ event: Event) async throws -> Event? {
        var routed = event
        routed.id = "\(event.id)~\(FNV1a.hex32(subject))"
        routed.subject = subject
        routed.category = Subjects.category(of: subject, prefix: provider.subjectPrefix) ?? event.category
        routed.metadata["courier_routed_from"] = event.subject
        routed.metadata["courier_original_id"] = event.id
        routed.metadata[Broker.hopsMetadataKey] = String(Broker.hops(of: event) + 1)
        _ = try await provider.publish(routed, options: PublishOptions(messageID: routed.id))
        return nil
    }
}

/// Delivers to an async closure in this process.
public struct InProcessSink: EventSink {
    public let description: String
    private let body: @Sendable (Event) async throws -> Event?

    /// A sink calling `body`; its return value is the reply event, if any.
    public init(_ description: String = "in-process", _ body: @escaping @Sendable (Event) async throws -> Event?) {
        self.description = description
        self.body = body
    }

    public func deliver(_ event: Event) async throws -> Event? { try await body(event) }
}

/// Logs each event with swift-log.
public struct LogSink: EventSink {
    /// The logger.
    public let logger: Logger
    /// The level events are logged at.
    public let level: Logger.Level

    /// A sink logging at `level`.
    public init(logger: Logger = Logger(label: "courier.route.log-sink"), level: Logger.Level = .info) {
        self.logger = logger
        self.level = level
    }

    public var description: String { "log(\(level))" }

    public func deliver(_ event: Event) async throws -> Event? {
        logger.log(
            level: level,
            "routed event",
            metadata: [
                "id": "\(event.id)", "subject": "\(event.subject)", "type": "\(event.eventType)",
                "summary": "\(event.summary)",
                "payload": "\(event.payload)",
            ]
        )
        return nil
    }
}

/// Collects delivered events in memory (for tests and examples).
public final class CollectorSink: EventSink {
    public let description: String
    private let collected = Mutex<[Event]>([])

    /// An empty collector.
    public init(_ description: String = "collector") {
        self.description = description
    }

    public func deliver(_ event: Event) async throws -> Event? {
        collected.withLock { $0.append(event) }
        return nil
    }

    /// Everything delivered so far, in delivery order.
    public var events: [Event] { collected.withLock { $0 } }
}

/// Sends dead letters to a sink (as events on `<prefix>-dlq.<original subject>` with the reason,
/// original id and subject, attempts and first failure time in metadata) and keeps the newest
/// ``capacity`` of them in memory.
public final class SinkDlqHandler: DlqHandler {
    /// The sink dead letters go to.
    public let sink: any EventSink
    /// The subject prefix of dead-letter subjects.
    public let prefix: String
    /// How many letters are kept locally.
    public let capacity: Int
    private let record = Mutex<(letters: [DeadLetterEvent], total: Int)>(([], 0))

    /// A handler forwarding to `sink`.
    public init(sink: any EventSink, prefix: String = Subjects.defaultPrefix, capacity: Int = 1000) {
        self.sink = sink
        self.prefix = prefix
        self.capacity = max(1, capacity)
    }

    public func handle(_ letter: DeadLetterEvent) async throws {
        _ = try await sink.deliver(
            letter.asEvent(deadLetterPrefix: DeadLetterEvent.defaultSubjectPrefix(forEventPrefix: prefix)))
        record.withLock { record in
            record.letters.append(letter)
            record.total += 1
            if record.letters.count > capacity { record.letters.removeFirst(record.letters.count - capacity) }
        }
    }

    public func list(limit: Int) async throws -> [DeadLetterEvent] {
        record.withLock { Array($0.letters.suffix(max(0, limit))) }
    }

    public func count() async throws -> Int { record.withLock { $0.total } }
}
#endif
