#if Routing
public import CourierCore
public import Logging

/// A broker declared in a JSON file: connection hints, broker settings, the default delivery
/// policy, the dead-letter destination and the triggers. `courier route --config FILE` runs it.
///
/// ```json
/// {
///   "server": "nats://127.0.0.1:4222",
///   "broker": { "name": "orders-router", "filter": "events.>" },
///   "delivery": { "retries": 3, "backoff": { "kind": "exponential", "baseMilliseconds": 200 } },
///   "deadLetter": { "type": "provider" },
///   "triggers": [
///     { "name": "audit", "filter": { "subjectPattern": "events.orders.>" },
///       "sink": { "type": "topic", "subject": "events.audit.orders" } },
///     { "name": "paid-log", "filter": { "expressions": [ { "exact": { "type": "order.paid" } } ] },
///       "sink": { "type": "log", "level": "notice" } }
///   ]
/// }
/// ```
///
/// Unknown keys are rejected, so a misspelt filter field cannot silently widen a trigger.
public struct RoutingConfiguration: Sendable, Codable {
    /// The NATS server URL(s), comma-separated; command-line options win.
    public var server: String?
    /// The JetStream stream name.
    public var stream: String?
    /// The subject prefix.
    public var prefix: String?
    /// Broker settings.
    public var broker: BrokerSection
    /// The default delivery policy.
    public var delivery: DeliveryPolicy
    /// Where dead letters go.
    public var deadLetter: DeadLetterSection
    /// The triggers.
    public var triggers: [TriggerSection]

    /// Broker settings of a routing file.
    public struct BrokerSection: Sendable, Codable {
        /// The broker (and durable consumer) name.
        public var name: String = "courier-broker"
        /// The subject filter read; `nil` is `<prefix>.>`.
        public var filter: String?
        /// Events routed at once.
        public var concurrency: Int = 32
        /// The hop limit.
        public var hopLimit: Int = 16
        /// Redelivery delay of incompletely routed events, milliseconds.
        public var nakDelayMilliseconds: Int64 = 1000
        /// The consumer's ack wait, milliseconds.
        public var ackWaitMilliseconds: Int64 = 30_000

        /// Defaults.
        public init() {}

        private enum CodingKeys: String, CodingKey, CaseIterable {
            case name, filter, concurrency, hopLimit, nakDelayMilliseconds, ackWaitMilliseconds
        }

        public init(from decoder: any Decoder) throws {
            try rejectUnknownKeys(in: decoder, allowed: CodingKeys.allCases, context: "broker")
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decodeIfPresent(String.self, forKey: .name) ?? name
            filter = try c.decodeIfPresent(String.self, forKey: .filter)
            concurrency = try c.decodeIfPresent(Int.self, forKey: .concurrency) ?? concurrency
            hopLimit = try c.decodeIfPresent(Int.self, forKey: .hopLimit) ?? hopLimit
            nakDelayMilliseconds =
                try c.decodeIfPresent(Int64.self, forKey: .nakDelayMilliseconds) ?? nakDelayMilliseconds
            ackWaitMilliseconds = try c.decodeIfPresent(Int64.self, forKey: .ackWaitMilliseconds) ?? ackWaitMilliseconds
        }
    }

    /// Where a routing file sends dead letters.
    public struct DeadLetterSection: Sendable, Codable {
        /// `provider` (the provider's dead letters, the default: a dead-letter stream of its own on
        /// JetStream) or a sink type (`topic`, `log`).
        public var type: String = "provider"
        /// The sink, for `topic` and `log`.
        public var sink: SinkSection?

        /// Defaults: through the provider.
        public init() {}

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: AnyCodingKey.self)
            type = try c.decodeIfPresent(String.self, forKey: AnyCodingKey("type")) ?? "provider"
            if type == "provider" {
                try rejectUnknownKeys(in: decoder, allowed: ["type"], context: "deadLetter")
            } else {
                sink = try SinkSection(from: decoder)
            }
        }

        public func encode(to encoder: any Encoder) throws {
            if let sink {
                try sink.encode(to: encoder)
            } else {
                var c = encoder.container(keyedBy: AnyCodingKey.self)
                try c.encode(type, forKey: AnyCodingKey("type"))
            }
        }
    }

    /// A sink in a routing file: `{"type": "topic", "subject": …}` or
    /// `{"type": "log", "level": …}`.
    public struct SinkSection: Sendable, Codable {
        /// `topic` or `log`.
        public var type: String
        /// The target subject of a topic sink.
        public var subject: String?
        /// The level of a log sink (default `info`).
        public var level: String?

        /// A sink declaration.
        public init(type: String, subject: String? = nil, level: String? = nil) {
            self.type = type
            self.subject = subject
            self.level = level
        }

        private enum CodingKeys: String, CodingKey, CaseIterable { case type, subject, level }

        public init(from decoder: any Decoder) throws {
            try rejectUnknownKeys(in: decoder, allowed: CodingKeys.allCases, context: "sink")
            let c = try decoder.container(keyedBy: CodingKeys.self)
            type = try c.decode(String.self, forKey: .type)
            subject = try c.decodeIfPresent(String.self, forKey: .subject)
            level = try c.decodeIfPresent(String.self, forKey: .level)
        }

        /// Checks the type and its fields without building anything.
        public func validate() throws {
            switch type {
            case "topic":
                guard let subject else {
                    throw CourierError(.invalidConfiguration, "a topic sink needs a 'subject'", input: "sink.subject")
                }
                try Subjects.validate(subject)
            case "log":
                guard Logger.Level(rawValue: level ?? "info") != nil else {
                    throw CourierError(
                        .invalidConfiguration,
                        "unknown log level '\(level ?? "")' (trace, debug, info, notice, warning, error, critical)",
                        input: "sink.level"
                    )
                }
            default:
                throw CourierError(
                    .invalidConfiguration, "unknown sink type '\(type)' (topic, log)", input: "sink.type")
            }
        }

        /// The sink this declares, publishing through `provider`.
        public func makeSink(provider: any EventProvider, logger: Logger) throws -> any EventSink {
            try validate()
            if type == "topic", let subject { return try TopicSink(provider: provider, subject: subject) }
            return LogSink(logger: logger, level: Logger.Level(rawValue: level ?? "info") ?? .info)
        }
    }

    /// A trigger in a routing file.
    public struct TriggerSection: Sendable, Codable {
        /// The trigger name.
        public var name: String
        /// Its filter (default: everything).
        public var filter: TriggerFilter
        /// Its sink.
        public var sink: SinkSection
        /// Its delivery policy (default: the file's).
        public var delivery: DeliveryPolicy?

        private enum CodingKeys: String, CodingKey, CaseIterable { case name, filter, sink, delivery }

        public init(from decoder: any Decoder) throws {
            try rejectUnknownKeys(in: decoder, allowed: CodingKeys.allCases, context: "trigger")
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            filter = try c.decodeIfPresent(TriggerFilter.self, forKey: .filter) ?? TriggerFilter()
            sink = try c.decode(SinkSection.self, forKey: .sink)
            delivery = try c.decodeIfPresent(DeliveryPolicy.self, forKey: .delivery)
        }
    }

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case server, stream, prefix, broker, delivery, deadLetter, triggers
    }

    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(in: decoder, allowed: CodingKeys.allCases, context: "routing configuration")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        server = try c.decodeIfPresent(String.self, forKey: .server)
        stream = try c.decodeIfPresent(String.self, forKey: .stream)
        prefix = try c.decodeIfPresent(String.self, forKey: .prefix)
        broker = try c.decodeIfPresent(BrokerSection.self, forKey: .broker) ?? BrokerSection()
        delivery = try c.decodeIfPresent(DeliveryPolicy.self, forKey: .delivery) ?? DeliveryPolicy()
        deadLetter = try c.decodeIfPresent(DeadLetterSection.self, forKey: .deadLetter) ?? DeadLetterSection()
        triggers = try c.decode([TriggerSection].self, forKey: .triggers)
    }

    /// Parses and checks a routing file's contents; `source` names it in errors.
    ///
    /// - Throws: `CourierError/Code/invalidConfiguration` (or `CourierError/Code/invalidFilter`)
    ///   naming the file and the offending field.
    public static func parse(_ bytes: [UInt8], source: String) throws -> RoutingConfiguration {
        let configuration: RoutingConfiguration
        do {
            configuration = try JSONValue(parsing: bytes).decode(RoutingConfiguration.self)
        } catch var error as CourierError {
            error.message = "\(source): \(error.message)"
            throw error
        } catch let error as DecodingError {
            throw CourierError(.invalidConfiguration, "\(source): \(describe(error))", input: source)
        } catch {
            throw CourierError(.invalidConfiguration, "\(source): \(error)", input: source)
        }
        do {
            try configuration.validate()
        } catch var error as CourierError {
            error.message = "\(source): \(error.message)"
            throw error
        }
        return configuration
    }

    /// Checks every section without connecting anywhere.
    public func validate() throws {
        try delivery.validate()
        guard broker.concurrency >= 1 else {
            throw CourierError(
                .invalidConfiguration, "broker.concurrency must be at least 1", input: "broker.concurrency")
        }
        guard broker.hopLimit >= 1 else {
            throw CourierError(.invalidConfiguration, "broker.hopLimit must be at least 1", input: "broker.hopLimit")
        }
        guard broker.ackWaitMilliseconds >= 1000 else {
            throw CourierError(
                .invalidConfiguration, "broker.ackWaitMilliseconds must be at least 1000",
                input: "broker.ackWaitMilliseconds")
        }
        guard broker.nakDelayMilliseconds >= 0 else {
            throw CourierError(
                .invalidConfiguration, "broker.nakDelayMilliseconds must not be negative",
                input: "broker.nakDelayMilliseconds")
        }
        _ = try ConsumerName.sanitize(broker.name)
        if let filter = broker.filter { _ = try SubjectFilter(filter) }
        guard !triggers.isEmpty else {
            throw CourierError(.invalidConfiguration, "declare at least one trigger", input: "triggers")
        }
        var names = Set<String>()
        for trigger in triggers {
            guard names.insert(trigger.name).inserted else {
                throw CourierError(
                    .invalidConfiguration, "trigger name '\(trigger.name)' is used twice", input: trigger.name)
            }
            // Builds the trigger against no provider to check name, filter and policy.
            _ = try Trigger(
                name: trigger.name, filter: trigger.filter, sink: InProcessSink { _ in nil }, delivery: trigger.delivery
            )
            do {
                try trigger.sink.validate()
            } catch var error as CourierError {
                error.message = "trigger '\(trigger.name)': \(error.message)"
                throw error
            }
        }
        if let sink = deadLetter.sink {
            do {
                try sink.validate()
            } catch var error as CourierError {
                error.message = "deadLetter: \(error.message)"
                throw error
            }
        }
    }

    /// A durable broker over `provider` (give it the application's `EventPipeline` so routed
    /// and republished events pass the same layers) with these triggers. The broker logs to
    /// `logger`; log sinks write to `sinkLogger` (default: `logger`).
    public func makeBroker(
        provider: any EventProvider,
        logger: Logger = Logger(label: "courier.broker"),
        sinkLogger: Logger? = nil
    ) throws -> Broker {
        let sinkLogger = sinkLogger ?? logger
        let deadLetters: any DlqHandler =
            if let sink = deadLetter.sink {
                SinkDlqHandler(
                    sink: try sink.makeSink(provider: provider, logger: sinkLogger), prefix: provider.subjectPrefix)
            } else {
                provider.deadLetters
            }
        var options = Broker.Source.defaultOptions
        options.ackWait = .milliseconds(broker.ackWaitMilliseconds)
        let configuration = Broker.Configuration(
            name: broker.name,
            delivery: delivery,
            deadLetters: deadLetters,
            publishReply: { reply in _ = try await provider.publish(reply, options: PublishOptions(messageID: reply.id))
            },
            hopLimit: broker.hopLimit,
            source: Broker.Source(
                provider: provider,
                filter: broker.filter,
                options: options,
                concurrency: broker.concurrency,
                nakDelay: .milliseconds(broker.nakDelayMilliseconds)
            ),
            logger: logger
        )
        let router = Broker(configuration: configuration)
        for trigger in triggers {
            try router.addTrigger(
                Trigger(
                    name: trigger.name,
                    filter: trigger.filter,
                    sink: trigger.sink.makeSink(provider: provider, logger: sinkLogger),
                    delivery: trigger.delivery
                )
            )
        }
        return router
    }
}

/// A coding key for any name.
struct AnyCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ string: String) { stringValue = string }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// Throws when the object being decoded has a key outside `allowed`, naming it.
func rejectUnknownKeys<Key: CodingKey>(in decoder: any Decoder, allowed: [Key], context: String) throws {
    try rejectUnknownKeys(in: decoder, allowed: allowed.map(\.stringValue), context: context)
}

/// Throws when the object being decoded has a key outside `allowed`, naming it.
func rejectUnknownKeys(in decoder: any Decoder, allowed: [String], context: String) throws {
    let keys = try decoder.container(keyedBy: AnyCodingKey.self).allKeys.map(\.stringValue)
    if let unknown = keys.first(where: { !allowed.contains($0) }) {
        throw CourierError(
            .invalidConfiguration,
            "unknown key '\(unknown)' in \(context) (expected one of \(allowed.joined(separator: ", ")))",
            input: unknown
        )
    }
}

/// A one-line description of a decoding error with its key path.
func describe(_ error: DecodingError) -> String {
    func path(_ context: DecodingError.Context) -> String {
        let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        return path.isEmpty ? "top level" : path
    }
    switch error {
    case .keyNotFound(let key, let context): return "missing key '\(key.stringValue)' at \(path(context))"
    case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
        return "\(context.debugDescription) at \(path(context))"
    @unknown default: return "\(error)"
    }
}
#endif
