public import CourierCore
public import Testing

/// Everything one conformance case needs: a fresh provider on its own subject prefix.
public struct ConformanceContext: Sendable {
    /// The provider under test, created for this case alone.
    public let provider: any EventProvider
    /// How long to wait for something that must happen.
    public let patience: Duration

    /// `<prefix>.<category>.<topic>`.
    public func subject(_ topic: String, category: String = "orders") -> String {
        "\(provider.subjectPrefix).\(category).\(topic)"
    }

    /// A new event on `<prefix>.<category>.<topic>`.
    public func event(
        _ topic: String = "created",
        category: String = "orders",
        payload: JSONValue = ["n": 1],
        summary: String = "",
        metadata: [String: String] = [:]
    ) -> Event {
        Event(
            subject: subject(topic, category: category),
            category: category,
            payload: payload,
            summary: summary,
            source: "conformance",
            metadata: metadata
        )
    }

    /// Publishes `count` events on one topic and returns them in order.
    @discardableResult
    public func publish(_ count: Int, topic: String = "created", category: String = "orders") async throws -> [Event] {
        var events: [Event] = []
        for i in 0..<count {
            let event = self.event(topic, category: category, payload: ["n": .int(Int64(i))])
            try await provider.publish(event)
            events.append(event)
        }
        return events
    }

    /// The next delivery, failing the test when none arrives in time.
    public func next(_ subscription: EventSubscription, sourceLocation: SourceLocation = #_sourceLocation) async throws
        -> PendingEvent
    {
        try #require(
            await subscription.next(timeout: patience), "no delivery within \(patience)", sourceLocation: sourceLocation
        )
    }

    /// Expects no delivery for `duration`.
    public func expectNothing(
        _ subscription: EventSubscription,
        for duration: Duration,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let unexpected = try await subscription.next(timeout: duration)
        #expect(
            unexpected == nil, "unexpected delivery of sequence \(unexpected?.sequence ?? 0)",
            sourceLocation: sourceLocation)
    }
}

/// Creates the provider for one conformance case, on subject prefix `prefix`.
public typealias ProviderFactory = @Sendable (_ prefix: String) async throws -> any EventProvider

/// One behavioural check every `EventProvider` must pass.
public struct ProviderConformanceCase: Sendable, CustomTestStringConvertible {
    /// The behaviour checked.
    public let name: String
    let body: @Sendable (ConformanceContext) async throws -> Void

    public var testDescription: String { name }

    /// Runs the case on a fresh provider from `factory`, shutting it down afterwards.
    public func run(patience: Duration = .seconds(10), using factory: ProviderFactory) async throws {
        let prefix = "c" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
        let provider = try await factory(prefix)
        do {
            try await body(ConformanceContext(provider: provider, patience: patience))
            await provider.shutdown()
        } catch {
            await provider.shutdown()
            throw error
        }
    }
}

/// The provider conformance suite: `MemoryProvider` and the JetStream provider both pass it.
///
/// Use it from a test target with a parameterised test; the factory gives each provider the
/// subject prefix it is passed and a duplicate window of ``duplicateWindow``:
///
/// ```swift
/// @Test(arguments: ProviderConformance.cases)
/// func conformance(_ check: ProviderConformanceCase) async throws {
///     try await check.run { prefix in MyProvider(prefix: prefix, duplicateWindow: ProviderConformance.duplicateWindow) }
/// }
/// ```
public enum ProviderConformance {
    /// The duplicate window a factory must give the providers it creates: the dedupe cases wait
    /// for it to pass.
    public static let duplicateWindow: Duration = .seconds(5)

    /// Every case.
    public static let cases: [ProviderConformanceCase] = publishing + subscribing + acknowledging + policies + queries

    static func check(_ name: String, _ body: @escaping @Sendable (ConformanceContext) async throws -> Void)
        -> ProviderConformanceCase
    {
        ProviderConformanceCase(name: name, body: body)
    }
}
