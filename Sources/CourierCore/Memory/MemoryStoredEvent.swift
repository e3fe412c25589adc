/// A stored event: the decoded event for one published as an ``Event``, or its wire JSON for
/// one appended in its wire form by the ingest core (checked on the way in, decoded when it is
/// delivered, so a retained event costs about its wire bytes).
struct StoredEvent {
    enum Body {
        indirect case event(Event)
        case wire([UInt8])
    }

    let sequence: UInt64
    let subject: String
    let body: Body
    let size: Int
    /// Unix nanoseconds when it was stored (for `startTime` and `maxAge`).
    let storedAt: Int64

    /// The event. Wire bytes were checked with ``Event/checkWire(_:subjectHint:)`` when they
    /// were appended, which accepts only what decodes; should decoding fail all the same, the
    /// event comes back with the raw text as its payload and the error in its metadata rather
    /// than vanish.
    var event: Event {
        switch body {
        case .event(let event):
            return event
        case .wire(let bytes):
            do {
                return try Event(wireJSON: bytes)
            } catch {
                return Event(
                    id: "undecodable-\(sequence)",
                    subject: subject,
                    category: subject.split(separator: ".").dropFirst().first.map(String.init) ?? "",
                    payload: .string(String(decoding: bytes, as: UTF8.self)),
                    timestamp: storedAt / 1_000_000,
                    metadata: ["courier.undecodable": "\(error)"]
                )
            }
        }
    }
}

/// A batch of events the ingest core appends in their wire form. An event's dedupe identity is
/// its batch (producer, shard, first shard sequence) and its index in it, so a retried batch is
/// recognised with one lookup instead of one per event.
package struct WireBatch: Sendable {
    /// The batch's identity, the same each time the ingest core resends it.
    package struct Key: Hashable, Sendable {
        package var producer: UInt64
        package var shard: Int
        package var start: UInt64

        package init(producer: UInt64, shard: Int, start: UInt64) {
            self.producer = producer
            self.shard = shard
            self.start = start
        }
    }

    package var key: Key
    /// Each event's wire JSON.
    package var bytes: [[UInt8]]
    /// The subject each event was ingested on (reused when its JSON names the same one).
    package var subjects: [String]
    /// Whether every one of `subjects` already passed ``Subjects/validate(_:)`` (an event whose
    /// JSON names the same subject is then not validated again).
    package var subjectsAreValid: Bool

    package init(key: Key, bytes: [[UInt8]], subjects: [String], subjectsAreValid: Bool = false) {
        self.key = key
        self.bytes = bytes
        self.subjects = subjects
        self.subjectsAreValid = subjectsAreValid
    }
}

/// What the stream remembers of a wire batch for dedupe: the stream sequence each index was
/// stored at (0 where it was not) and when it last stored one.
struct StoredBatch {
    var sequences: [UInt64]
    var storedAt: Int64
}

/// A dedupe id with its hash computed once, before the provider's lock is taken: the dedupe
/// table then hashes one integer per lookup, insert and resize instead of the id's bytes.
struct MessageID: Hashable {
    let text: String
    let hashValueOfText: Int

    init(_ text: String) {
        self.text = text
        var hasher = Hasher()
        hasher.combine(text)
        hashValueOfText = hasher.finalize()
    }

    func hash(into hasher: inout Hasher) { hasher.combine(hashValueOfText) }

    /// What the dedupe table hashes on each lookup, insert and resize: the id's hash mixed with
    /// the table's seed by SplitMix64's finaliser, without seeding and finalising a `Hasher`
    /// each time (which was 4 % of the memory provider's publish profile, under its lock). The
    /// id's hash came from a seeded `Hasher`, so it is as unpredictable as the default.
    func _rawHashValue(seed: Int) -> Int {
        var z = UInt64(bitPattern: Int64(hashValueOfText ^ seed))
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return Int(truncatingIfNeeded: z ^ (z >> 31))
    }

    static func == (a: MessageID, b: MessageID) -> Bool {
        a.hashValueOfText == b.hashValueOfText && a.text == b.text
    }
}
