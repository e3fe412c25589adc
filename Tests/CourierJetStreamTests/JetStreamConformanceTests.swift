#if NATS
import CourierCore
import CourierJetStream
import CourierTesting
import Testing

@Suite("JetStreamProvider conformance (real nats-server, file storage)", .natsServer)
struct JetStreamConformanceTests {
    @Test(arguments: ProviderConformance.cases)
    func conformance(_ check: ProviderConformanceCase) async throws {
        let url = try NATSServerTrait.url()
        try await check.run { prefix in
            var configuration = JetStreamProvider.Configuration(url: url)
            configuration.stream = prefix.uppercased()
            configuration.subjectPrefix = prefix
            configuration.duplicateWindow = ProviderConformance.duplicateWindow
            configuration.storage = .file
            return try await JetStreamProvider.connect(configuration)
        }
    }
}
#endif
