import Synchronization
import Testing

@testable import CourierJetStream

/// The two structures the async publisher touches for every message: the table of messages
/// awaiting their acknowledgement and the window that bounds them. No server needed.
@Suite("Publish window and pending table")
struct PublishWindowTests {
    @Test("pending table: tokens in their slots, a taken slot overflows, nothing lost or counted twice")
    func pendingTable() {
        var table = PendingTable<String>(expected: 4)  // 16 slots
        for token in UInt64(1)...8 { table.insert("m\(token)", for: token) }
        #expect(table.count == 8)
        // Token 17 has token 1's slot: it goes to the side table, and both are found.
        table.insert("m17", for: 17)
        table.insert("m33", for: 33)
        #expect(table.count == 10)
        #expect(table.remove(17) == "m17")
        #expect(table.remove(1) == "m1")
        #expect(table.remove(1) == nil, "taken once")
        #expect(table.remove(49) == nil, "never registered, though its slot and the side table are in use")
        // Registering a token again replaces its value without counting it twice.
        table.insert("m2 again", for: 2)
        #expect(table.count == 8)
        #expect(table.remove(2) == "m2 again")
        #expect(Set(table.all) == ["m3", "m4", "m5", "m6", "m7", "m8", "m33"])
        let taken = table.removeAll()
        #expect(Set(taken) == ["m3", "m4", "m5", "m6", "m7", "m8", "m33"])
        #expect(table.isEmpty && table.all.isEmpty)
        #expect(table.remove(3) == nil && table.remove(33) == nil)
        table.insert("again", for: 3)
        #expect(table.remove(3) == "again" && table.isEmpty)
    }

    @Test(
        "window: many tasks taking and returning slots never hold more than its size, and none waits forever",
        arguments: [1, 4, 16, 1024])
    func windowUnderContention(size: Int) async {
        let window = AsyncWindow(size: size)
        let slots = HeldSlots()
        let tasks = 8
        let rounds = 2_000
        // Each worker ends with `.done`; the timer with `.timedOut`, or `.stopped` once cancelled.
        enum End { case done, timedOut, stopped }
        let finished = await withTaskGroup(of: End.self) { group in
            for _ in 0..<tasks {
                group.addTask {
                    for _ in 0..<rounds {
                        await window.acquire()
                        let now = slots.held.add(1, ordering: .sequentiallyConsistent).newValue
                        slots.most.max(now, ordering: .relaxed)
                        await Task.yield()  // hold the slot across a suspension, so others find the window full
                        slots.held.subtract(1, ordering: .sequentiallyConsistent)
                        window.release()
                    }
                    return .done
                }
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(60))
                return Task.isCancelled ? .stopped : .timedOut
            }
            var done = 0
            var timedOut = false
            while let end = await group.next() {
                switch end {
                case .done:
                    done += 1
                    if done == tasks { group.cancelAll() }
                case .timedOut:
                    // A lost wakeup: free enough slots that every stuck task can end, and fail.
                    timedOut = true
                    for _ in 0..<(tasks * rounds) { window.release() }
                case .stopped:
                    break
                }
            }
            return done == tasks && !timedOut
        }
        #expect(finished, "every task got its slots within 60 s")
        #expect(slots.most.load(ordering: .relaxed) <= size)
        #expect(window.inFlight == 0)
    }
}

/// Slots held at once by the tasks of a test, and the most ever held.
private final class HeldSlots: Sendable {
    let held = Atomic<Int>(0)
    let most = Atomic<Int>(0)
}
