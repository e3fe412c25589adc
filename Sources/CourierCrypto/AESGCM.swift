#if Encryption
internal import COpenSSL
import CourierCore
import Synchronization

/// AES-256-GCM through OpenSSL's EVP interface: 256-bit keys, 96-bit nonces from the OpenSSL
/// RNG, 128-bit tags. No cipher code of Courier's own.
public enum AESGCM {
    /// Key length in bytes.
    public static let keyLength = 32
    /// Nonce length in bytes.
    public static let nonceLength = 12
    /// Tag length in bytes.
    public static let tagLength = 16

    /// A fresh 96-bit nonce from OpenSSL's RNG. Random bytes are fetched 4 KiB at a time (one
    /// RNG call per 341 nonces instead of one per message) and each is handed out exactly once.
    public static func nonce() throws -> [UInt8] {
        try NonceSource.shared.next()
    }

    /// `count` cryptographically secure random bytes from OpenSSL's RNG.
    public static func randomBytes(_ count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        guard count == 0 || RAND_bytes(&bytes, Int32(count)) == 1 else {
            throw CourierError(.encryptionFailed, "the OpenSSL random generator failed", input: "RAND_bytes")
        }
        return bytes
    }

    /// Encrypts `plaintext` and returns the ciphertext with the 16-byte tag appended.
    ///
    /// - Throws: `CourierError/Code/encryptionFailed` (never with key material in the message).
    public static func seal(
        _ plaintext: UnsafeRawBufferPointer,
        key: [UInt8],
        nonce: [UInt8],
        associatedData: [UInt8] = []
    ) throws -> [UInt8] {
        guard key.count == keyLength, nonce.count == nonceLength else {
            throw CourierError(.encryptionFailed, "AES-256-GCM needs a 32-byte key and a 12-byte nonce", input: "key")
        }
        guard let context = EVP_CIPHER_CTX_new() else {
            throw CourierError(
                .encryptionFailed, "cannot allocate an OpenSSL cipher context", input: "EVP_CIPHER_CTX_new")
        }
        defer { EVP_CIPHER_CTX_free(context) }
        var ok = false
        let output = [UInt8](unsafeUninitializedCapacity: plaintext.count + tagLength) { out, count in
            ok = seal(context, plaintext, key: key, nonce: nonce, associatedData: associatedData, into: out)
            count = ok ? plaintext.count + tagLength : 0
        }
        guard ok else {
            throw CourierError(.encryptionFailed, "OpenSSL AES-256-GCM encryption failed", input: "EVP_aes_256_gcm")
        }
        return output
    }

    private static func seal(
        _ context: OpaquePointer,
        _ plaintext: UnsafeRawBufferPointer,
        key: [UInt8],
        nonce: [UInt8],
        associatedData: [UInt8],
        into out: UnsafeMutableBufferPointer<UInt8>
    ) -> Bool {
        var written: Int32 = 0
        guard EVP_EncryptInit_ex(context, EVP_aes_256_gcm(), nil, key, nonce) == 1 else { return false }
        if !associatedData.isEmpty {
            var ignored: Int32 = 0
            guard EVP_EncryptUpdate(context, nil, &ignored, associatedData, Int32(associatedData.count)) == 1 else {
                return false
            }
        }
        if plaintext.count > 0 {
            guard
                EVP_EncryptUpdate(
                    context, out.baseAddress, &written,
                    plaintext.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(plaintext.count)) == 1
            else { return false }
        }
        var final: Int32 = 0
        guard EVP_EncryptFinal_ex(context, out.baseAddress! + Int(written), &final) == 1 else { return false }
        return EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_GET_TAG, Int32(tagLength), out.baseAddress! + plaintext.count)
            == 1
    }

    /// Decrypts `sealed` (ciphertext with the tag appended) and verifies the tag.
    ///
    /// - Throws: `CourierError/Code/decryptionFailed` when the input is too short or the tag
    ///   does not verify (wrong key, altered ciphertext, tag, nonce or associated data).
    public static func open(
        _ sealed: UnsafeRawBufferPointer,
        key: [UInt8],
        nonce: [UInt8],
        associatedData: [UInt8] = []
    ) throws -> [UInt8] {
        guard key.count == keyLength else {
            throw CourierError(.decryptionFailed, "AES-256-GCM needs a 32-byte key", input: "key")
        }
        guard nonce.count == nonceLength else {
            throw CourierError(
                .decryptionFailed, "nonce must be \(nonceLength) bytes, got \(nonce.count)", input: "nonce")
        }
        guard sealed.count >= tagLength else {
            throw CourierError(
                .decryptionFailed, "ciphertext is \(sealed.count) bytes, shorter than the \(tagLength)-byte tag",
                input: "ciphertext")
        }
        guard let context = EVP_CIPHER_CTX_new() else {
            throw CourierError(
                .decryptionFailed, "cannot allocate an OpenSSL cipher context", input: "EVP_CIPHER_CTX_new")
        }
        defer { EVP_CIPHER_CTX_free(context) }
        let bodyLength = sealed.count - tagLength
        let input = sealed.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var tag = Array(UnsafeBufferPointer(start: input + bodyLength, count: tagLength))
        var verified = false
        let output = [UInt8](unsafeUninitializedCapacity: max(bodyLength, 1)) { out, count in
            verified = open(
                context, input, bodyLength, tag: &tag, key: key, nonce: nonce, associatedData: associatedData, into: out
            )
            count = verified ? bodyLength : 0
        }
        guard verified else {
            throw CourierError(
                .decryptionFailed,
                "authentication failed: the ciphertext, tag, nonce or associated data was altered, or the key is wrong",
                input: "ciphertext"
            )
        }
        return output
    }

    private static func open(
        _ context: OpaquePointer,
        _ input: UnsafePointer<UInt8>,
        _ bodyLength: Int,
        tag: inout [UInt8],
        key: [UInt8],
        nonce: [UInt8],
        associatedData: [UInt8],
        into out: UnsafeMutableBufferPointer<UInt8>
    ) -> Bool {
        var written: Int32 = 0
        guard EVP_DecryptInit_ex(context, EVP_aes_256_gcm(), nil, key, nonce) == 1 else { return false }
        if !associatedData.isEmpty {
            var ignored: Int32 = 0
            guard EVP_DecryptUpdate(context, nil, &ignored, associatedData, Int32(associatedData.count)) == 1 else {
                return false
            }
        }
        if bodyLength > 0 {
            guard EVP_DecryptUpdate(context, out.baseAddress, &written, input, Int32(bodyLength)) == 1 else {
                return false
            }
        }
        guard EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_TAG, Int32(tagLength), &tag) == 1 else { return false }
        var final: Int32 = 0
        return EVP_DecryptFinal_ex(context, out.baseAddress! + Int(written), &final) == 1
    }

    /// Hands out nonces from a buffer of OpenSSL random bytes.
    private final class NonceSource: Sendable {
        static let shared = NonceSource()
        private let state = Mutex<(bytes: [UInt8], offset: Int)>(([], 0))

        func next() throws -> [UInt8] {
            try state.withLock { state in
                if state.offset + nonceLength > state.bytes.count {
                    state.bytes = try randomBytes(nonceLength * 341)
                    state.offset = 0
                }
                defer { state.offset += nonceLength }
                return Array(state.bytes[state.offset..<state.offset + nonceLength])
            }
        }
    }

    /// SHA-256 of `bytes` (for key fingerprints).
    static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        _ = EVP_Digest(bytes, bytes.count, &digest, &length, EVP_sha256(), nil)
        return digest
    }
}
#endif
