import CourierCore
import CourierTesting
import Testing

@Suite("MemoryProvider conformance")
struct MemoryConformanceTests {
    @Test(arguments: ProviderConformance.cases)
    func conformance(_ check: ProviderConformanceCase) async throws {
        try await check.run { prefix in
            var configuration = MemoryProvider.Configuration()
            configuration.subjectPrefix = prefix
            configuration.duplicateWindow = ProviderConformance.duplicateWindow
            return MemoryProvider(configuration: configuration)
        }
    }
}
