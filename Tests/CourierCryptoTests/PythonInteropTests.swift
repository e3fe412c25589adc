#if Encryption
import CourierCore
import CourierCrypto
import CourierTesting
import Foundation
import Testing

/// Courier envelopes against Python's `cryptography` package (AESGCM), from the documented key,
/// nonce, ciphertext ‖ tag and associated data (event id, zero byte, subject).
@Suite("Encryption interoperability with Python cryptography")
struct PythonInteropTests {
    static func python(_ script: String, input: String) async throws -> String {
        try await runChildProcess("/usr/bin/env", ["python3", "-c", script], input: input)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test("Python decrypts a Courier envelope")
    func pythonDecryptsCourier() async throws {
        let key = try EncryptionKey.generate(id: "shared")
        let encryptor = AESGCMEncryptor(keyRing: try KeyRing([key]))
        let event = Event(
            subject: "events.payments.captured", category: "payments", payload: ["amount": 42, "currency": "EUR"])
        let sealed = try encryptor.encrypt(event)
        let input = try JSONValue(encoding: [
            "key": key.hexMaterial, "id": event.id, "subject": event.subject, "envelope": sealed.payload.description,
        ])
        let plaintext = try await Self.python(
            """
            import sys, json, base64
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
            doc = json.load(sys.stdin)
            env = json.loads(doc["envelope"])
            aad = doc["id"].encode() + b"\\0" + doc["subject"].encode()
            plain = AESGCM(bytes.fromhex(doc["key"])).decrypt(base64.b64decode(env["nonce"]), base64.b64decode(env["ciphertext"]), aad)
            print(plain.decode())
            """,
            input: input.description
        )
        #expect(try JSONValue(parsing: plaintext) == ["amount": 42, "currency": "EUR"])
    }

    @Test("Courier decrypts an envelope made by Python")
    func courierDecryptsPython() async throws {
        let key = try EncryptionKey.generate(id: "py")
        let encryptor = AESGCMEncryptor(keyRing: try KeyRing([key]))
        var event = Event(subject: "events.orders.created", category: "orders")
        let envelope = try await Self.python(
            """
            import sys, json, base64, os
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
            doc = json.load(sys.stdin)
            nonce = os.urandom(12)
            aad = doc["id"].encode() + b"\\0" + doc["subject"].encode()
            sealed = AESGCM(bytes.fromhex(doc["key"])).encrypt(nonce, json.dumps({"from": "python", "n": 7}).encode(), aad)
            print(json.dumps({"keyId": "py", "nonce": base64.b64encode(nonce).decode(), "ciphertext": base64.b64encode(sealed).decode(), "encrypted": True}))
            """,
            input: try JSONValue(encoding: ["key": key.hexMaterial, "id": event.id, "subject": event.subject])
                .description
        )
        event.payload = try JSONValue(parsing: envelope)
        #expect(try encryptor.decrypt(event).payload == ["from": "python", "n": 7])
    }
}
#endif
