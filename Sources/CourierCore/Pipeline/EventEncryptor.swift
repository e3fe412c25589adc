/// Encrypts and decrypts event payloads. The encryption layer (trait `Encryption`) provides
/// `AESGCMEncryptor`; an ``EventPipeline`` built with ``EventPipeline/encrypting(_:)`` calls it on
/// every publish and every delivery.
public protocol EventEncryptor: Sendable {
    /// `event` with its payload replaced by an encrypted envelope.
    func encrypt(_ event: Event) throws -> Event
    /// `event` with its encrypted envelope replaced by the plaintext payload; unencrypted events
    /// are returned unchanged.
    ///
    /// - Throws: ``CourierError/Code/decryptionFailed`` naming the event and the reason.
    func decrypt(_ event: Event) throws -> Event
    /// Whether `event` carries an encrypted envelope.
    func isEncrypted(_ event: Event) -> Bool
}
