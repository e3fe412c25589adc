#if NATS
import CourierJetStream

/// How many messages of `messages` (in stream order) carry an ingest dedupe id
/// `<nonce>:<shard>:<sequenceStart>:<index>` whose shard sequence does not increase over the
/// previous one of its shard: per-shard order is the ingest adapter contract's invariant.
func eventsOutOfShardOrder(_ messages: [StoredMessage]) -> Int {
    var last: [Int: UInt64] = [:]
    var outOfOrder = 0
    for message in messages {
        let parts = (message.messageID ?? "").split(separator: ":")
        guard parts.count == 4, let shard = Int(parts[1]), let start = UInt64(parts[2]),
            let index = UInt64(parts[3])
        else { continue }
        if let previous = last[shard], start + index <= previous { outOfOrder += 1 }
        last[shard] = start + index
    }
    return outOfOrder
}
#endif
