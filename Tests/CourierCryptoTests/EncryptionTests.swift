#if Encryption
import CourierCore
import CourierCrypto
import CourierTesting
import Foundation
import Testing

@Suite("AES-256-GCM payload encryption")
struct EncryptionTests {
    static func event(_ payload: JSONValue = ["card": "4111-1111", "amount": 12.5]) -> Event {
        Event(subject: "events.payments.captured", category: "payments", payload: payload, source: "pay")
    }

    static func encryptor(bindsToEvent: Bool = true) throws -> (AESGCMEncryptor, KeyRing) {
        let ring = try KeyRing([EncryptionKey.generate(id: "k1")])
        return (AESGCMEncryptor(keyRing: ring, bindsToEvent: bindsToEvent), ring)
    }

    @Test(
        "round trips at several sizes, with the a3s envelope shape", arguments: [0, 1, 255, 1024, 16 * 1024, 300_000])
    func roundTrip(_ size: Int) throws {
        let (encryptor, _) = try Self.encryptor()
        let original = Self.event(size == 0 ? nil : ["blob": .string(String(repeating: "é", count: size / 2) + "x")])
        let encrypted = try encryptor.encrypt(original)
        #expect(encryptor.isEncrypted(encrypted))
        #expect(encrypted.payload["keyId"] == "k1")
        #expect(encrypted.payload["encrypted"] == true)
        let nonceText = try #require(encrypted.payload["nonce"]?.stringValue)
        let nonce = try #require(Base64.decode(nonceText))
        #expect(nonce.count == 12)
        let cipherText = try #require(encrypted.payload["ciphertext"]?.stringValue)
        let sealed = try #require(Base64.decode(cipherText))
        #expect(sealed.count == original.payload.jsonBytes().count + 16)
        #expect(encrypted.id == original.id && encrypted.subject == original.subject, "only the payload changes")
        #expect(try encryptor.decrypt(encrypted) == original)
    }

    @Test("every message gets a fresh nonce")
    func freshNonces() throws {
        let (encryptor, _) = try Self.encryptor()
        let event = Self.event()
        let nonces = try (0..<200).map { _ in try encryptor.encrypt(event).payload["nonce"]!.stringValue! }
        #expect(Set(nonces).count == 200)
    }

    @Test("unencrypted events pass through decrypt unchanged")
    func plainPassesThrough() throws {
        let (encryptor, _) = try Self.encryptor()
        let event = Self.event()
        #expect(!encryptor.isEncrypted(event))
        #expect(try encryptor.decrypt(event) == event)
    }

    @Test("rotation: old keys keep decrypting until retired")
    func rotation() throws {
        let (encryptor, ring) = try Self.encryptor()
        let old = try encryptor.encrypt(Self.event())
        try ring.rotate(to: EncryptionKey.generate(id: "k2"))
        let new = try encryptor.encrypt(Self.event())
        #expect(new.payload["keyId"] == "k2")
        #expect(try encryptor.decrypt(old).payload["amount"] == 12.5)
        try ring.retire("k1")
        let retired = #expect(throws: CourierError.self) { try encryptor.decrypt(old) }
        #expect(retired?.code == .decryptionFailed)
        #expect(retired?.message.contains("retired") == true)
        #expect(try encryptor.decrypt(new).payload["amount"] == 12.5)
        #expect(throws: CourierError.self) { try ring.retire("k2") }  // the active key
        #expect(throws: CourierError.self) { try ring.rotate(to: "k1") }
    }

    @Test("rotating keys while publishing concurrently loses nothing")
    func concurrentRotation() async throws {
        let (encryptor, ring) = try Self.encryptor()
        // Four tasks encrypt concurrently; each also rotates the ring twice while the others run.
        let events = try await withThrowingTaskGroup(of: [Event].self) { group in
            for task in 0..<4 {
                group.addTask {
                    var sealed: [Event] = []
                    for i in 0..<250 {
                        if i == 50 || i == 150 { try ring.rotate(to: EncryptionKey.generate(id: "t\(task)-\(i)")) }
                        sealed.append(try encryptor.encrypt(Self.event(["i": .int(Int64(i))])))
                    }
                    return sealed
                }
            }
            return try await group.reduce(into: [Event]()) { $0 += $1 }
        }
        #expect(events.count == 1000)
        #expect(ring.keyIDs.count == 9)
        #expect(Set(events.compactMap { $0.payload["keyId"]?.stringValue }).count > 1)
        for event in events { #expect(try encryptor.decrypt(event).payload["i"] != nil) }
    }

    @Test("unknown key id")
    func unknownKey() throws {
        let (encryptor, _) = try Self.encryptor()
        let (other, _) = try Self.encryptor()
        let error = #expect(throws: CourierError.self) { try other.decrypt(try encryptor.encrypt(Self.event())) }
        #expect(error?.code == .decryptionFailed)
        // Same id "k1", different bytes: the tag does not verify.
        #expect(error?.message.contains("authentication failed") == true)
        var foreign = try encryptor.encrypt(Self.event())
        foreign.payload = .object(foreign.payload.objectValue!.merging(["keyId": "nope"]) { $1 })
        let unknown = #expect(throws: CourierError.self) { try encryptor.decrypt(foreign) }
        #expect(unknown?.message.contains("unknown key id 'nope'") == true)
        #expect(unknown?.input == "nope")
    }

    static func tampered(_ event: Event, field: String, _ change: ([UInt8]) -> [UInt8]) -> Event {
        var copy = event
        var envelope = copy.payload.objectValue!
        let bytes = Base64.decode(envelope[field]!.stringValue!)!
        envelope[field] = .string(Base64.encode(change(bytes)))
        copy.payload = .object(envelope)
        return copy
    }

    @Test("tampered ciphertext, tag and nonce are rejected")
    func tampering() throws {
        let (encryptor, _) = try Self.encryptor()
        let sealed = try encryptor.encrypt(Self.event())
        let cases: [(String, Event)] = [
            (
                "ciphertext",
                Self.tampered(sealed, field: "ciphertext") {
                    var b = $0; b[0] ^= 1; return b
                }
            ),
            (
                "tag",
                Self.tampered(sealed, field: "ciphertext") {
                    var b = $0; b[b.count - 1] ^= 0x80; return b
                }
            ),
            (
                "nonce",
                Self.tampered(sealed, field: "nonce") {
                    var b = $0; b[5] ^= 1; return b
                }
            ),
            ("short nonce", Self.tampered(sealed, field: "nonce") { Array($0.prefix(8)) }),
            ("truncated", Self.tampered(sealed, field: "ciphertext") { Array($0.prefix(10)) }),
        ]
        for (name, event) in cases {
            let error = #expect(throws: CourierError.self, "\(name)") { try encryptor.decrypt(event) }
            #expect(error?.code == .decryptionFailed, "\(name)")
        }
        var badBase64 = sealed
        badBase64.payload = .object(sealed.payload.objectValue!.merging(["nonce": "!!!"]) { $1 })
        let error = #expect(throws: CourierError.self) { try encryptor.decrypt(badBase64) }
        #expect(error?.input == "nonce")
    }

    @Test("an envelope moved onto another event fails; with binding off (a3s compatibility) it decrypts")
    func binding() throws {
        let (encryptor, ring) = try Self.encryptor()
        let sealed = try encryptor.encrypt(Self.event())
        var moved = Self.event(["other": true])
        moved.payload = sealed.payload
        #expect(throws: CourierError.self) { try encryptor.decrypt(moved) }
        let compatible = AESGCMEncryptor(keyRing: ring, bindsToEvent: false)
        let unbound = try compatible.encrypt(Self.event())
        moved.payload = unbound.payload
        #expect(try compatible.decrypt(moved).payload["amount"] == 12.5)
    }

    @Test("keys load from raw, hex and base64 files and environment; bad material never leaks")
    func keyLoading() throws {
        let key = try EncryptionKey.generate()
        let directory = NSTemporaryDirectory() + "courier-keys-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let bytes = Hex.decode(key.hexMaterial)!
        try Data(bytes).write(to: URL(fileURLWithPath: directory + "/raw"))
        try (key.hexMaterial + "\n").write(toFile: directory + "/hex", atomically: true, encoding: .utf8)
        try Base64.encode(bytes).write(toFile: directory + "/b64", atomically: true, encoding: .utf8)
        for name in ["raw", "hex", "b64"] {
            #expect(try EncryptionKey.load(file: directory + "/" + name).id == key.id, "\(name)")
        }
        setenv("COURIER_TEST_KEY", key.hexMaterial, 1)
        #expect(try EncryptionKey.load(environment: "COURIER_TEST_KEY").id == key.id)
        try "0123456789abcdef".write(toFile: directory + "/short", atomically: true, encoding: .utf8)
        let error = #expect(throws: CourierError.self) { try EncryptionKey.load(file: directory + "/short") }
        #expect(error?.code == .invalidKey)
        #expect(error?.message.contains("0123456789abcdef") == false)
        #expect(!key.description.contains(key.hexMaterial))
        #expect(throws: CourierError.self) { try EncryptionKey.load(file: directory + "/missing") }
        #expect(throws: CourierError.self) { try EncryptionKey.load(environment: "COURIER_TEST_NOT_SET") }
    }

    @Test(
        "an encrypting pipeline encrypts on publish and decrypts on list and on delivery; undecryptable deliveries are dead-lettered"
    )
    func bus() async throws {
        let (encryptor, _) = try Self.encryptor()
        let provider = MemoryProvider()
        let dlq = MemoryDlqHandler()
        let bus = EventBus(pipeline: provider.encrypting(encryptor).metered())
        let subscription = try await bus.pipeline.subscribeDurable(
            consumer: "reader", filter: "events.>", options: SubscribeOptions(deadLetterHandler: dlq))
        let ephemeral = try await bus.pipeline.subscribe("events.>")
        let event = try await bus.publish(
            category: "payments", topic: "captured", summary: "s", source: "pay", payload: ["amount": 5])
        let stored = try await provider.history(filter: nil, limit: 1)[0]
        #expect(stored.payload["encrypted"] == true, "the provider only ever sees the envelope")
        #expect(stored.payload["amount"] == nil)
        #expect(try await bus.listEvents(limit: 1)[0].payload == ["amount": 5])
        #expect(try #require(await subscription.next(timeout: .seconds(5))).event.payload == ["amount": 5])
        #expect(try #require(await ephemeral.next(timeout: .seconds(5))).event.id == event.id)
        // Something encrypted with a key this bus does not have.
        let (stranger, _) = try Self.encryptor()
        try await provider.publish(try stranger.encrypt(Self.event()))
        #expect(try await subscription.next(timeout: .milliseconds(500)) == nil, "never handed out")
        #expect(await eventually(within: .seconds(5)) { dlq.letters().count == 1 })
        #expect(dlq.letters()[0].reason.contains("decryption failed"))
        #expect(bus.metrics?.snapshot().encryptCount == 1)
        #expect(bus.metrics?.snapshot().cryptoErrors == 1)
        await subscription.close()
        await ephemeral.close()
    }
}
#endif
