#if NATS && Encryption
import CourierCore
import CourierCrypto
import CourierJetStream
import CourierTesting
import Testing

/// The provider conformance suite on each provider inside the full stack of layers: validation,
/// encryption, tracing and metrics. A pipeline is a provider like any other.
@Suite("Conformance inside the full pipeline", .natsServer)
struct PipelineConformanceTests {
    static func stack(_ provider: any EventProvider) throws -> EventPipeline {
        let registry = MemorySchemaRegistry()
        try registry.register(EventSchema(eventType: "conformance.typed", version: 1, requiredFields: ["n"]))
        let encryptor = AESGCMEncryptor(keyRing: try KeyRing([EncryptionKey.generate(id: "conformance")]))
        return provider.validating(registry).encrypting(encryptor).traced().metered()
    }

    @Test("MemoryProvider in the full pipeline", arguments: ProviderConformance.cases)
    func memory(_ check: ProviderConformanceCase) async throws {
        try await check.run { prefix in
            var configuration = MemoryProvider.Configuration()
            configuration.subjectPrefix = prefix
            configuration.duplicateWindow = ProviderConformance.duplicateWindow
            return try Self.stack(MemoryProvider(configuration: configuration))
        }
    }

    @Test("JetStreamProvider in the full pipeline", arguments: ProviderConformance.cases)
    func jetstream(_ check: ProviderConformanceCase) async throws {
        let url = try NATSServerTrait.url()
        try await check.run { prefix in
            var configuration = JetStreamProvider.Configuration(url: url)
            configuration.stream = prefix.uppercased()
            configuration.subjectPrefix = prefix
            configuration.duplicateWindow = ProviderConformance.duplicateWindow
            return try Self.stack(try await JetStreamProvider.connect(configuration))
        }
    }
}
#endif
