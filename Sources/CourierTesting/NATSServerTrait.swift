public import Testing

/// A suite trait that starts one `nats-server -js` (``NATSServerHarness``) for the whole suite and
/// stops it, by PID, when the suite ends, whatever the outcome.
///
/// ```swift
/// @Suite(.natsServer) struct MyIntegrationTests {
///     @Test func publishes() async throws {
///         let url = try NATSServerTrait.url()
///     }
/// }
/// ```
public struct NATSServerTrait: SuiteTrait, TestScoping {
    /// The server of the running suite.
    @TaskLocal public static var current: NATSServerHarness?

    public var isRecursive: Bool { false }

    /// The running suite's server URL.
    public static func url() throws -> String {
        guard let current else {
            throw CourierTestingError("no nats-server: add the .natsServer trait to the suite")
        }
        return current.url
    }

    public func provideScope(
        for test: Test,
        testCase: Test.Case?,
        performing function: @Sendable () async throws -> Void
    ) async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        try await Self.$current.withValue(server) { try await function() }
    }
}

extension Trait where Self == NATSServerTrait {
    /// Runs the suite against its own `nats-server -js` on a free loopback port.
    public static var natsServer: NATSServerTrait { NATSServerTrait() }
}

/// A misuse of the testing helpers.
public struct CourierTestingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
