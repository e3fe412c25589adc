#if NATS
import CourierCore
import CourierTesting
import Testing

@testable import CourierJetStream

/// The ordered lane that lets an ingest shard's next batch go out while the previous one is
/// still acknowledged: who follows whom, and what a call does when the one before it failed.
@Suite("Publish lanes")
struct PublishLaneTests {
    @Test(
        "a new batch follows the latest call of the one before it; a retry follows nothing and a retry of the newest batch is followed"
    )
    func whoFollowsWhom() {
        let lane = PublishLane()
        let first = OrderedBatch(count: 1, deadline: .now)
        let second = OrderedBatch(count: 1, deadline: .now)
        let retryOfFirst = OrderedBatch(count: 1, deadline: .now)
        let retryOfSecond = OrderedBatch(count: 1, deadline: .now)
        let third = OrderedBatch(count: 1, deadline: .now)
        #expect(lane.enter(first, sequence: 0) == nil)
        #expect(lane.enter(second, sequence: 100) === first)
        #expect(lane.enter(retryOfFirst, sequence: 0) == nil, "a retry follows nothing")
        #expect(lane.enter(retryOfSecond, sequence: 100) == nil)
        #expect(lane.enter(third, sequence: 200) === retryOfSecond, "the newest batch's latest call")
    }

    @Test(
        "a call whose predecessor failed sends nothing and fails retryably; its retry, and the batch after, are stored in order"
    )
    func callAfterAFailedOneSendsNothing() async throws {
        let server = try await NATSServerHarness.start()
        defer {
            server.stop()
            server.cleanUp()
        }
        var configuration = JetStreamProvider.Configuration(url: server.url)
        configuration.stream = "LANES"
        let provider = try await JetStreamProvider.connect(configuration)
        let lane = PublishLane()
        func publish(_ subject: String, sequence: UInt64, timeout: Duration = .seconds(5)) async throws
            -> [Result<PublishAck, CourierError>]
        {
            var scratch: [UInt8] = []
            return try await provider.publish(count: 3, timeout: timeout, lane: lane, sequence: sequence) {
                index, reply in
                try makeNATSMessage(
                    OutgoingMessage(
                        subject: subject, payload: Array("\(sequence + UInt64(index))".utf8),
                        messageID: "lane:\(sequence + UInt64(index))"),
                    reply: reply, scratch: &scratch)
            }
        }
        // No stream stores this subject: every attempt meets no responders until the deadline.
        let failed = try await publish("nostream.lane.x", sequence: 0, timeout: .milliseconds(300))
        #expect(failed.allSatisfy { if case .failure(let error) = $0 { error.isRetryable } else { false } })
        let behind = try await publish("events.lane.x", sequence: 3)
        #expect(
            behind.allSatisfy { if case .failure(let error) = $0 { error.isRetryable } else { false } },
            "the batch behind a failed one fails without being sent")
        #expect(try await provider.info().messages == 0, "nothing of it was stored")
        let retried = try await publish("events.lane.x", sequence: 3)
        let next = try await publish("events.lane.x", sequence: 6)
        let sequences = (retried + next).compactMap { try? $0.get().sequence }
        #expect(sequences == [1, 2, 3, 4, 5, 6], "its retry, then the next batch, stored in order")
        await provider.shutdown()
    }
}
#endif
