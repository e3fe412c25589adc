#if Encryption
public import CourierCore

/// Encrypts event payloads with AES-256-GCM, replacing each payload by the a3s-event envelope:
///
/// ```json
/// {"ciphertext":"<base64(ciphertext ‖ tag)>","encrypted":true,"keyId":"k1","nonce":"<base64>"}
/// ```
///
/// The plaintext is the payload's compact JSON. Every message gets a fresh 96-bit nonce from the
/// OpenSSL RNG. By default the associated data binds the ciphertext to its event — the UTF-8 of
/// the event id, a zero byte, and the UTF-8 of the subject — so an envelope copied onto another
/// event fails to decrypt. Set ``bindsToEvent`` to `false` to interoperate with a3s-event, which
/// uses no associated data.
public struct AESGCMEncryptor: EventEncryptor {
    /// The keys.
    public let keyRing: KeyRing
    /// Whether the associated data binds the ciphertext to the event id and subject.
    public var bindsToEvent: Bool

    /// Creates an encryptor over `keyRing`.
    public init(keyRing: KeyRing, bindsToEvent: Bool = true) {
        self.keyRing = keyRing
        self.bindsToEvent = bindsToEvent
    }

    /// The associated data for `event`: id, a zero byte, subject; empty when not binding.
    public func associatedData(for event: Event) -> [UInt8] {
        guard bindsToEvent else { return [] }
        var data = Array(event.id.utf8)
        data.append(0)
        data.append(contentsOf: event.subject.utf8)
        return data
    }

    public func encrypt(_ event: Event) throws -> Event {
        let key = try keyRing.activeKey()
        let nonce = try AESGCM.nonce()
        let plaintext = event.payload.jsonBytes()
        let sealed = try plaintext.withUnsafeBytes {
            try AESGCM.seal($0, key: key.bytes, nonce: nonce, associatedData: associatedData(for: event))
        }
        var encrypted = event
        encrypted.payload = [
            "keyId": .string(key.id),
            "nonce": .string(Base64.encode(nonce)),
            "ciphertext": .string(Base64.encode(sealed)),
            "encrypted": true,
        ]
        return encrypted
    }

    public func decrypt(_ event: Event) throws -> Event {
        guard isEncrypted(event), case .object(let envelope) = event.payload else { return event }
        func failure(_ reason: String, _ input: String) -> CourierError {
            CourierError(
                .decryptionFailed, "cannot decrypt event \(event.id) on '\(event.subject)': \(reason)", input: input)
        }
        guard let keyID = envelope["keyId"]?.stringValue else { throw failure("envelope has no keyId", event.id) }
        guard let nonceText = envelope["nonce"]?.stringValue, let nonce = Base64.decode(nonceText) else {
            throw failure("nonce is not valid base64", "nonce")
        }
        guard nonce.count == AESGCM.nonceLength else {
            throw failure("nonce must be \(AESGCM.nonceLength) bytes, got \(nonce.count)", "nonce")
        }
        guard let cipherText = envelope["ciphertext"]?.stringValue, let sealed = Base64.decode(cipherText) else {
            throw failure("ciphertext is not valid base64", "ciphertext")
        }
        let key: EncryptionKey
        do {
            key = try keyRing.key(keyID)
        } catch let error as CourierError {
            throw failure(error.message, keyID)
        }
        let plaintext: [UInt8]
        do {
            plaintext = try sealed.withUnsafeBytes {
                try AESGCM.open($0, key: key.bytes, nonce: nonce, associatedData: associatedData(for: event))
            }
        } catch let error as CourierError {
            throw failure(error.message, error.input ?? "ciphertext")
        }
        var decrypted = event
        do {
            decrypted.payload = try JSONValue(parsing: plaintext)
        } catch {
            throw failure("the decrypted payload is not JSON", "ciphertext")
        }
        return decrypted
    }

    public func isEncrypted(_ event: Event) -> Bool {
        event.payload["encrypted"]?.boolValue == true && event.payload["ciphertext"] != nil
    }
}
#endif
