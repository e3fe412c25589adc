import Courier
import Foundation

/// `openssl speed -evp aes-256-gcm` in bytes per second for `size`-byte buffers.
func opensslSpeed(size: Int, decrypt: Bool) throws -> Double {
    // openssl speed times itself with SIGALRM, which Swift's threads (and so a child started
    // from them) have blocked: start it through python3 with an empty signal mask.
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments =
        [
            "python3", "-c",
            "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, set()); os.execvp(sys.argv[1], sys.argv[1:])",
            "openssl", "speed",
        ] + (decrypt ? ["-decrypt"] : []) + ["-evp", "aes-256-gcm", "-bytes", String(size), "-seconds", "1", "-mr"]
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self)
    guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("+F:") }),
        let value = line.split(separator: ":").last.flatMap({ Double($0) })
    else { throw CourierError(.providerError, "cannot read openssl speed output: \(text)") }
    return value
}

/// AES-256-GCM through Courier against OpenSSL's own speed test, in bytes per second.
func cryptoPairs() throws -> [Pair] {
    let ring = try KeyRing([EncryptionKey.generate(id: "bench")])
    let encryptor = AESGCMEncryptor(keyRing: ring)
    let key = try EncryptionKey.generate()
    let hex = Array(key.hexMaterial.utf8)
    let keyBytes = stride(from: 0, to: hex.count, by: 2).map {
        UInt8(String(decoding: hex[$0..<$0 + 2], as: UTF8.self), radix: 16)!
    }
    var pairs: [Pair] = []
    for size in [256, 1024, 16 * 1024] {
        let iterations = max(20_000, 400_000_000 / size)
        let plaintext = [UInt8](repeating: 0x61, count: size)
        let nonce = try AESGCM.randomBytes(12)
        let sealed = try plaintext.withUnsafeBytes { try AESGCM.seal($0, key: keyBytes, nonce: nonce) }
        pairs.append(
            Pair(
                name: "AES-256-GCM encrypt, \(size) B (bytes/s)",
                baseline: "openssl speed -evp aes-256-gcm",
                courier: "AESGCM.seal (fresh nonce, tag)",
                target: size == 16 * 1024 ? 0.8 : nil,
                measureBaseline: { try opensslSpeed(size: size, decrypt: false) },
                measureCourier: {
                    try await timed(iterations) {
                        for _ in 0..<iterations {
                            let nonce = try AESGCM.nonce()
                            _ = try plaintext.withUnsafeBytes { try AESGCM.seal($0, key: keyBytes, nonce: nonce) }
                        }
                    } * Double(size)
                }
            )
        )
        pairs.append(
            Pair(
                name: "AES-256-GCM decrypt, \(size) B (bytes/s)",
                baseline: "openssl speed -decrypt -evp aes-256-gcm",
                courier: "AESGCM.open (tag verified)",
                target: size == 16 * 1024 ? 0.8 : nil,
                measureBaseline: { try opensslSpeed(size: size, decrypt: true) },
                measureCourier: {
                    try await timed(iterations) {
                        for _ in 0..<iterations {
                            _ = try sealed.withUnsafeBytes { try AESGCM.open($0, key: keyBytes, nonce: nonce) }
                        }
                    } * Double(size)
                }
            )
        )
        let event = Event(
            subject: "events.bench.crypto", category: "bench", payload: .string(String(repeating: "a", count: size)))
        pairs.append(
            Pair(
                name: "event payload encrypt + decrypt, \(size) B (payload bytes/s)",
                baseline: "openssl speed -evp aes-256-gcm (encrypt only)",
                courier: "AESGCMEncryptor encrypt + decrypt (JSON, base64 envelope)",
                target: nil,
                measureBaseline: { try opensslSpeed(size: size, decrypt: false) },
                measureCourier: {
                    let count = iterations / 4
                    return try await timed(count) {
                        for _ in 0..<count { _ = try encryptor.decrypt(try encryptor.encrypt(event)) }
                    } * Double(size)
                }
            )
        )
    }
    return pairs
}

/// Schema validation of a 10-field event against serialising the same event to wire JSON.
func validationPairs() throws -> [Pair] {
    let registry = MemorySchemaRegistry()
    let fields = (0..<10).map { "field\($0)" }
    try registry.register(
        EventSchema(
            eventType: "bench.ten", version: 1, requiredFields: fields,
            fieldTypes: Dictionary(
                uniqueKeysWithValues: fields.enumerated().map { ($1, $0 % 2 == 0 ? JSONFieldType.string : .integer) })
        )
    )
    let payload = JSONValue.object(
        Dictionary(
            uniqueKeysWithValues: fields.enumerated().map {
                ($1, $0 % 2 == 0 ? JSONValue.string("value\($0)") : .int(Int64($0)))
            }))
    let event = Event(
        subject: "events.bench.validate", category: "bench", eventType: "bench.ten", version: 1, payload: payload)
    let count = 200_000
    return [
        Pair(
            name: "validate a 10-field typed event (events/s)",
            baseline: "serialise the same event to wire JSON",
            courier: "MemorySchemaRegistry.validate",
            target: nil,
            measureBaseline: {
                await timed(count) {
                    var bytes = 0
                    for _ in 0..<count { bytes &+= event.wireJSON().count }
                    precondition(bytes > 0)
                }
            },
            measureCourier: {
                try await timed(count) { for _ in 0..<count { try registry.validate(event) } }
            }
        )
    ]
}
