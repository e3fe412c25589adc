#if NATS
import CourierJetStream
import Testing

@Suite("Ordered reads of a stream")
struct OrderedReadTests {
    /// Records each pending count in turn and returns, for each, whether the read was complete.
    static func record(_ pendings: [UInt64], into progress: inout OrderedReadProgress) -> [Bool] {
        pendings.map { progress.record(pending: $0) }
    }

    @Test("a read ends only once it holds what the server promised, even when a message says nothing is pending early")
    func earlyNothingPending() {
        var progress = OrderedReadProgress()
        // Five promised; the fourth message says nothing is pending, one early (nats-server
        // 2.9.10 after leader changes): the read goes on, and a quiet server is a stall.
        #expect(Self.record([4, 3, 2, 0], into: &progress) == [false, false, false, false])
        #expect(!progress.isCompleteWhenQuiet)
        #expect(progress.left == 1)
        #expect(Self.record([0], into: &progress) == [true])
        #expect(progress.isCompleteWhenQuiet && progress.left == 0)
    }

    @Test("messages stored during a read extend it; a read that got nothing is a stall, not the end")
    func growingAndEmpty() {
        var progress = OrderedReadProgress()
        // Two more were stored while the second message was on its way.
        #expect(Self.record([1, 2, 1, 0], into: &progress) == [false, false, false, true])
        #expect(progress.read == 4 && progress.promised == 4)
        #expect(!OrderedReadProgress().isCompleteWhenQuiet, "nothing read and nothing said")
    }
}
#endif
