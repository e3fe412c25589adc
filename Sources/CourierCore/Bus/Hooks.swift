/// Encrypts and decrypts event payloads. The encryption layer (trait `Encryption`) provides
/// `AESGCMEncryptor`; ``EventBus`` calls it on publish and on every read.
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

/// Routes published events onward (the routing layer's `Broker` conforms). ``EventBus`` calls it
/// after each successful publish when configured for inline routing.
public protocol EventRouter: Sendable {
    /// Routes one published event. Failures are handled (retried, dead-lettered) by the router;
    /// a thrown error means routing itself could not run.
    func routePublished(_ event: Event) async throws
}
