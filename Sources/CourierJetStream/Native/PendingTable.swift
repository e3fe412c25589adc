#if NATS

/// Values awaiting their reply, by token, for publish tokens handed out in increasing order.
///
/// A token has the slot `token % slotCount`, with `slotCount` a power of two at least twice the
/// number of values that can be pending at once (the publish window). Tokens in flight are
/// mostly recent and consecutive, so they find their slots free: insert and remove are an index
/// and a comparison, with no hashing, probing or moving of neighbours. A token whose slot is
/// taken (a resend of a message much older than the rest) goes to a dictionary on the side.
///
/// Not thread-safe: the owner keeps it behind its lock.
struct PendingTable<Value> {
    /// The token in each slot, 0 when the slot is free (tokens start at 1).
    private var tokens: [UInt64]
    private var values: [Value?]
    private var overflow: [UInt64: Value] = [:]
    private let mask: Int
    /// How many values are pending.
    private(set) var count = 0

    /// A table for at most about `expected` values pending at once.
    init(expected: Int) {
        var slots = 16
        while slots < 2 * expected { slots *= 2 }
        tokens = Array(repeating: 0, count: slots)
        values = Array(repeating: nil, count: slots)
        mask = slots - 1
    }

    var isEmpty: Bool { count == 0 }

    /// Registers `value` under `token` (nonzero), replacing what was registered under it.
    mutating func insert(_ value: Value, for token: UInt64) {
        precondition(token != 0, "publish tokens start at 1")
        let slot = Int(truncatingIfNeeded: token) & mask
        if tokens[slot] == token {
            values[slot] = value
        } else if tokens[slot] == 0 {
            tokens[slot] = token
            values[slot] = value
            count += 1
        } else if overflow.updateValue(value, forKey: token) == nil {
            count += 1
        }
    }

    /// Takes out what is registered under `token`, if anything.
    mutating func remove(_ token: UInt64) -> Value? {
        let slot = Int(truncatingIfNeeded: token) & mask
        if tokens[slot] == token, token != 0 {
            tokens[slot] = 0
            count -= 1
            return values[slot].take()
        }
        guard !overflow.isEmpty, let value = overflow.removeValue(forKey: token) else { return nil }
        count -= 1
        return value
    }

    /// Every pending value, in no particular order.
    var all: [Value] {
        guard count > 0 else { return [] }
        var result: [Value] = []
        result.reserveCapacity(count)
        for slot in tokens.indices where tokens[slot] != 0 { result.append(values[slot]!) }
        result.append(contentsOf: overflow.values)
        return result
    }

    /// Takes out every pending value, in no particular order.
    mutating func removeAll() -> [Value] {
        let taken = all
        guard !taken.isEmpty else { return [] }
        for slot in tokens.indices where tokens[slot] != 0 {
            tokens[slot] = 0
            values[slot] = nil
        }
        overflow.removeAll()
        count = 0
        return taken
    }
}
#endif
