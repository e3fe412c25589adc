import CourierCore

/// A read of what the adapter stored, across shards.
public struct ConsumeRequest: Sendable, Hashable {
    /// How merged events are ordered.
    public struct Ordering: Sendable, Hashable {
        let byTimestamp: Bool
        /// By shard sequence number (ties by shard): each shard's order, interleaved fairly.
        public static let sequence = Ordering(byTimestamp: false)
        /// By event timestamp (ties by shard, then sequence).
        public static let timestamp = Ordering(byTimestamp: true)
    }

    /// The most events to return.
    public var limit: Int
    /// Where the previous response left off; `nil` starts at the beginning.
    public var cursor: String?
    /// Only events whose subject matches this filter (others are skipped, and the cursor moves
    /// past them).
    public var filter: String?
    /// How shards are merged.
    public var ordering: Ordering
    /// Only these shards; `nil` reads every current shard.
    public var shards: [Int]?

    /// Creates a request.
    public init(
        limit: Int = 100, cursor: String? = nil, filter: String? = nil, ordering: Ordering = .sequence,
        shards: [Int]? = nil
    ) {
        self.limit = limit
        self.cursor = cursor
        self.filter = filter
        self.ordering = ordering
        self.shards = shards
    }
}

/// The answer to a ``ConsumeRequest``.
public struct ConsumeResponse: Sendable {
    /// The events, merged in the requested order.
    public var events: [IngestedEvent]
    /// An opaque (base64) cursor to resume from.
    public var cursor: String
    /// Whether more events are waiting.
    public var hasMore: Bool
    /// Events the cursor pointed at that are no longer retained, per shard: the read skipped to
    /// the earliest available event instead of failing.
    public var gaps: [Int: UInt64]
}

extension IngestBus {
    /// Reads stored events across shards through the adapter's
    /// ``Adapter/pollShard(shard:cursor:limit:)``, merging them by the requested ordering.
    ///
    /// - Throws: `CourierError/Code/invalidConfiguration` for a malformed cursor or limit,
    ///   `CourierError/Code/invalidFilter` for a bad filter, or the adapter's error.
    public func poll(_ request: ConsumeRequest) async throws -> ConsumeResponse {
        guard request.limit >= 1 else {
            throw CourierError(.invalidConfiguration, "limit must be at least 1, got \(request.limit)", input: "limit")
        }
        let filter = try request.filter.map { try SubjectFilter($0) }
        var positions = try request.cursor.map(Self.decodeCursor) ?? [:]
        let shards = request.shards ?? Array(0..<shardCount)
        for shard in shards where shard < 0 || shard >= configuration.maxShards {
            throw CourierError(.invalidConfiguration, "no shard \(shard)", input: "shards")
        }
        var candidates: [IngestedEvent] = []
        var gaps: [Int: UInt64] = [:]
        var hasMore = false
        for shard in shards {
            var cursor = positions[shard] ?? 0
            // Read on past events the filter rejects, within a bounded number of reads.
            for _ in 0..<64 {
                let result = try await configuration.adapter.pollShard(
                    shard: shard, cursor: cursor, limit: request.limit)
                if result.skipped > 0 { gaps[shard, default: 0] += result.skipped }
                var taken = 0
                for event in result.events {
                    if let filter, !filter.matches(event.raw.subject) {
                        if taken == 0 { cursor = event.cursor }  // skip it for good
                        continue
                    }
                    candidates.append(event)
                    taken += 1
                }
                if taken > 0 {
                    hasMore = hasMore || result.hasMore
                    break
                }
                cursor = max(cursor, result.cursor)
                if !result.hasMore { break }
            }
            positions[shard] = cursor
        }
        if request.ordering.byTimestamp {
            candidates.sort { ($0.raw.timestamp, $0.shard, $0.sequence) < ($1.raw.timestamp, $1.shard, $1.sequence) }
        } else {
            candidates.sort { ($0.sequence, $0.shard) < ($1.sequence, $1.shard) }
        }
        let events = Array(candidates.prefix(request.limit))
        if candidates.count > events.count { hasMore = true }
        for event in events { positions[event.shard] = max(positions[event.shard] ?? 0, event.cursor) }
        return ConsumeResponse(events: events, cursor: Self.encodeCursor(positions), hasMore: hasMore, gaps: gaps)
    }

    /// `shard:position` pairs, comma-separated, base64.
    static func encodeCursor(_ positions: [Int: UInt64]) -> String {
        let text = positions.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }.joined(separator: ",")
        return Base64.encode(Array(text.utf8))
    }

    static func decodeCursor(_ cursor: String) throws -> [Int: UInt64] {
        guard let bytes = Base64.decode(cursor) else {
            throw CourierError(.invalidConfiguration, "the cursor is not base64: '\(cursor)'", input: cursor)
        }
        var positions: [Int: UInt64] = [:]
        let text = String(decoding: bytes, as: UTF8.self)
        for pair in text.split(separator: ",") {
            let parts = pair.split(separator: ":")
            guard parts.count == 2, let shard = Int(parts[0]), let position = UInt64(parts[1]), shard >= 0 else {
                throw CourierError(.invalidConfiguration, "the cursor is malformed: '\(cursor)'", input: cursor)
            }
            positions[shard] = position
        }
        return positions
    }
}
