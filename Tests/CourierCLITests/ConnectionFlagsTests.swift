#if NATS
import CourierCore
import CourierTesting
import Foundation
import Testing

/// Every command that connects takes a server list and the same connection flags.
@Suite("courier: connection flags on every command", .natsServer)
struct ConnectionFlagsTests {
    @Test("courier bench ingest --adapter jetstream connects through a server list")
    func benchTakesAServerList() async throws {
        let url = try NATSServerTrait.url()
        // The first URL refuses connections: a list is tried in turn, one URL with a comma is not.
        let unreachable = "nats://127.0.0.1:\(try NATSServerHarness.freePort())"
        let run = try await runCourier([
            "bench", "ingest", "--adapter", "jetstream", "--count", "2000", "--json",
            "--server", "\(unreachable),\(url)", "--stream", "BENCHLIST",
        ])
        #expect(run.status == 0, "\(run.errors)")
        let result = try JSONValue(parsing: run.output)
        #expect(result["dispatched"]?.intValue == 2000)
    }
}
#endif
