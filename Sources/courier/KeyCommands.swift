#if Encryption
import ArgumentParser
import Courier
import Foundation

struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Generate a random AES-256 key (hex) for payload encryption.",
        discussion: "With --out the key is written to FILE (mode 0600) and only its id is printed."
    )

    @Option(name: .long, help: "Write the key to this file instead of standard output.")
    var out: String?

    @Option(name: .long, help: "The key id (default: k + 8 hex digits of the key's SHA-256).")
    var id: String?

    func run() throws {
        let key = try EncryptionKey.generate(id: id)
        guard let out else {
            print(key.hexMaterial)
            FileHandle.standardError.write(Data("key id: \(key.id)\n".utf8))
            return
        }
        guard
            FileManager.default.createFile(
                atPath: out, contents: Data((key.hexMaterial + "\n").utf8), attributes: [.posixPermissions: 0o600])
        else {
            throw CourierError(.storageFailed, "cannot write key file \(out)", input: out)
        }
        print(key.id)
    }
}

/// `--decrypt-key FILE`, repeatable: keys that decrypt payloads (the first also encrypts).
struct KeyOptions: ParsableArguments {
    @Option(name: .long, help: "Key file (raw, hex or base64) for encrypted payloads; repeat for several keys.")
    var decryptKey: [String] = []

    /// A pipeline over `provider` that decrypts with the keys given, if any.
    func pipeline(over provider: any EventProvider) throws -> EventPipeline {
        guard !decryptKey.isEmpty else { return EventPipeline(base: provider) }
        return provider.encrypting(
            AESGCMEncryptor(keyRing: try KeyRing(decryptKey.map { try EncryptionKey.load(file: $0) })))
    }
}
#endif
