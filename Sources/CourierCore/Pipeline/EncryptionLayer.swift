import Logging

/// Encrypts every payload on its way to the provider and decrypts every delivery and history
/// read on its way back. A delivery that cannot be decrypted (unknown key, tampered ciphertext)
/// is terminated with the reason, which dead-letters it, instead of being redelivered forever.
/// Dead letters are stored encrypted too: a letter about a plaintext event (a routing failure,
/// say) is encrypted before its handler stores it.
struct EncryptionLayer: ProviderLayer {
    let base: any EventProvider
    let encryptor: any EventEncryptor
    let metrics: EventMetrics?
    let logger: Logger

    func encrypted(_ event: Event) throws -> Event {
        do {
            let sealed = try encryptor.encrypt(event)
            metrics?.recordEncrypt()
            return sealed
        } catch {
            metrics?.recordCryptoError()
            throw error
        }
    }

    func decrypted(_ event: Event) throws -> Event {
        guard encryptor.isEncrypted(event) else { return event }
        do {
            let plain = try encryptor.decrypt(event)
            metrics?.recordDecrypt()
            return plain
        } catch {
            metrics?.recordCryptoError()
            throw error
        }
    }

    var deadLetters: any DlqHandler { EncryptingDlqHandler(base: base.deadLetters, layer: self) }

    func publish(_ event: Event, options: PublishOptions) async throws -> PublishAck {
        try await base.publish(encrypted(event), options: options)
    }

    func publishBatch(_ events: [Event], timeout: Duration?) async -> [Result<PublishAck, CourierError>] {
        await publishAccepted(events, timeout: timeout, through: base, encrypted)
    }

    func subscribe(_ filter: String, options: SubscribeOptions) async throws -> EventSubscription {
        decrypting(try await base.subscribe(filter, options: sealedLetters(options)))
    }

    func subscribeDurable(consumer: String, filter: String, options: SubscribeOptions) async throws
        -> EventSubscription
    {
        decrypting(try await base.subscribeDurable(consumer: consumer, filter: filter, options: sealedLetters(options)))
    }

    func history(filter: String?, limit: Int) async throws -> [Event] {
        try await base.history(filter: filter, limit: limit).map(decrypted)
    }

    /// `options` whose own dead-letter handler, if any, stores letters encrypted.
    private func sealedLetters(_ options: SubscribeOptions) -> SubscribeOptions {
        guard let handler = options.deadLetterHandler else { return options }
        var options = options
        options.deadLetterHandler = EncryptingDlqHandler(base: handler, layer: self)
        return options
    }

    private func decrypting(_ subscription: EventSubscription) -> EventSubscription {
        subscription.mapDeliveries { [self] pending in
            do {
                return pending.replacingEvent(try decrypted(pending.event))
            } catch {
                logger.warning(
                    "dead-lettering an event that cannot be decrypted",
                    metadata: ["event": "\(pending.event.id)", "sequence": "\(pending.sequence)", "error": "\(error)"]
                )
                let reason = (error as? CourierError)?.message ?? "\(error)"
                try await pending.term(reason: "decryption failed: \(reason)")
                return nil
            }
        }
    }
}

/// Stores dead letters with their event encrypted (letters that already carry an encrypted
/// event pass unchanged) and decrypts them when they are listed.
struct EncryptingDlqHandler: DlqHandler {
    let base: any DlqHandler
    let layer: EncryptionLayer

    func handle(_ letter: DeadLetterEvent) async throws {
        guard !layer.encryptor.isEncrypted(letter.event) else { return try await base.handle(letter) }
        var sealed = letter
        sealed.event = try layer.encrypted(letter.event)
        try await base.handle(sealed)
    }

    func list(limit: Int) async throws -> [DeadLetterEvent] {
        try await base.list(limit: limit).map { letter in
            var open = letter
            open.event = (try? layer.decrypted(letter.event)) ?? letter.event
            return open
        }
    }

    func count() async throws -> Int { try await base.count() }
}
