import Courier

// AES-256-GCM payload encryption with live key rotation: the pipeline encrypts payloads before
// they reach the provider and decrypts them on every read, for every path that uses it. Rotating the active key needs no restart;
// events encrypted under the old key stay readable until that key is retired.

let provider = try await ProviderSelection.provider(connectionName: "example-encrypted-events")
let keyRing = try KeyRing([try EncryptionKey.generate(id: "2026-q3")])
let encryptor = AESGCMEncryptor(keyRing: keyRing)
let bus = EventBus(pipeline: provider.encrypting(encryptor))
let run = String(UInt32.random(in: 0...UInt32.max), radix: 16)
let topic = "card-\(run)"

try await bus.publish(
    category: "payments", topic: topic, summary: "before rotation", source: "example",
    payload: ["pan": "4111 1111 1111 1111"])
try keyRing.rotate(to: try EncryptionKey.generate(id: "2026-q4"))
print("rotated the active key to \(keyRing.activeKeyID ?? "?")")
try await bus.publish(
    category: "payments", topic: topic, summary: "after rotation", source: "example",
    payload: ["pan": "5500 0000 0000 0004"])

// What the provider stores: envelopes naming their key, never the plaintext.
let subject = try provider.buildSubject(category: "payments", topic: topic)
for stored in try await provider.history(filter: subject, limit: 10) {
    print(
        "stored: \(stored.summary) → keyId \(stored.payload["keyId"]?.stringValue ?? "?"), encrypted \(stored.payload["encrypted"] == .bool(true))"
    )
}
// What readers get (the bus decrypts the same way on list and on delivery): plaintext,
// whichever key encrypted it.
let stored = try await provider.history(filter: subject, limit: 10)
for event in try stored.map({ try encryptor.decrypt($0) }) {
    print("read:   \(event.summary) → \(event.payload["pan"]?.stringValue ?? "?")")
}

// Retiring the old key makes its events unreadable: a typed error names the missing key.
try keyRing.retire("2026-q3")
do {
    _ = try stored.map { try encryptor.decrypt($0) }
} catch let error as CourierError {
    print("after retiring 2026-q3: \(error.code) — \(error.message)")
}
await provider.shutdown()
