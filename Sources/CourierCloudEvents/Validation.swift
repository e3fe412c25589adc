#if CloudEvents
import CourierCore

extension CloudEvent {
    /// Checks the event against the CloudEvents 1.0 rules: required attributes present and
    /// non-empty, `specversion` 1.0, attribute names `[a-z0-9]+` and not reserved, `dataschema` an
    /// absolute URI, `source` a URI-reference, `datacontenttype` an RFC 2046 media type, integers
    /// within 32 bits, and no forbidden control characters or noncharacters in strings.
    ///
    /// - Throws: `CourierError/Code/invalidCloudEvent` naming the attribute.
    public func validate() throws {
        guard !specversion.isEmpty else { throw CloudEventRules.missing("specversion") }
        guard specversion == "1.0" else {
            throw CloudEventRules.invalid("specversion", "unsupported specversion '\(specversion)'; Courier reads 1.0")
        }
        for (name, value) in [("id", id), ("source", source), ("type", type)] {
            guard !value.isEmpty else { throw CloudEventRules.missing(name) }
            try CloudEventRules.checkCharacters(value, name)
        }
        guard CloudEventRules.isURIReference(source) else {
            throw CloudEventRules.invalid("source", "'\(source)' is not a URI-reference")
        }
        if let subject {
            guard !subject.isEmpty else { throw CloudEventRules.invalid("subject", "must not be empty when present") }
            try CloudEventRules.checkCharacters(subject, "subject")
        }
        if let datacontenttype {
            guard CloudEventRules.isMediaType(datacontenttype) else {
                throw CloudEventRules.invalid("datacontenttype", "'\(datacontenttype)' is not an RFC 2046 media type")
            }
        }
        if let dataschema {
            guard CloudEventRules.isAbsoluteURI(dataschema) else {
                throw CloudEventRules.invalid("dataschema", "'\(dataschema)' is not an absolute URI")
            }
        }
        if case .text(let text) = data { try CloudEventRules.checkCharacters(text, "data") }
        for (name, value) in extensions {
            try CloudEventRules.checkExtensionName(name)
            switch value {
            case .string(let text): try CloudEventRules.checkCharacters(text, name)
            case .uri(let uri):
                guard CloudEventRules.isAbsoluteURI(uri) else {
                    throw CloudEventRules.invalid(name, "'\(uri)' is not an absolute URI")
                }
            case .uriReference(let reference):
                guard CloudEventRules.isURIReference(reference) else {
                    throw CloudEventRules.invalid(name, "'\(reference)' is not a URI-reference")
                }
            case .boolean, .integer, .binary, .timestamp: break
            }
        }
    }
}

/// The spec's syntax rules.
enum CloudEventRules {
    static func missing(_ attribute: String) -> CourierError {
        CourierError(.invalidCloudEvent, "required attribute '\(attribute)' is missing or empty", input: attribute)
    }

    static func invalid(_ attribute: String, _ reason: String) -> CourierError {
        CourierError(.invalidCloudEvent, "attribute '\(attribute)': \(reason)", input: attribute)
    }

    /// Extension names: `[a-z0-9]+`, not a core attribute, not `data`.
    static func checkExtensionName(_ name: String) throws {
        guard !name.isEmpty, name.utf8.allSatisfy({ (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) }) else {
            throw invalid(name, "attribute names must be lowercase letters and digits only")
        }
        guard !CloudEvent.coreAttributes.contains(name) else {
            throw invalid(name, "'\(name)' is reserved and cannot be an extension attribute")
        }
    }

    /// No C0/C1 control characters and no Unicode noncharacters.
    static func checkCharacters(_ text: String, _ attribute: String) throws {
        for scalar in text.unicodeScalars {
            let value = scalar.value
            let forbidden =
                value <= 0x1F || (0x7F...0x9F).contains(value) || (0xFDD0...0xFDEF).contains(value)
                || (value & 0xFFFE) == 0xFFFE
            if forbidden {
                throw invalid(
                    attribute, "contains the forbidden character U+\(String(value, radix: 16, uppercase: true))")
            }
        }
    }

    private static let tokenExtras = Set("!#$%&'*+-.^_`|~".utf8)

    private static func isToken(_ text: Substring) -> Bool {
        !text.isEmpty
            && text.utf8.allSatisfy {
                (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0)
                    || tokenExtras.contains($0)
            }
    }

    /// `type/subtype` followed by `; name=value` parameters (RFC 2046 / RFC 7231).
    static func isMediaType(_ text: String) -> Bool {
        let parts = text.split(separator: ";", omittingEmptySubsequences: false)
        let essence = parts[0].trimmingSpaces
        let halves = essence.split(separator: "/", omittingEmptySubsequences: false)
        guard halves.count == 2, isToken(halves[0]), isToken(halves[1]) else { return false }
        for parameter in parts.dropFirst() {
            let pair = parameter.trimmingSpaces.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard pair.count == 2, isToken(pair[0]) else { return false }
            let value = pair[1]
            if value.hasPrefix("\"") {
                guard value.count >= 2, value.hasSuffix("\"") else { return false }
            } else if !isToken(value) {
                return false
            }
        }
        return true
    }

    /// `scheme ":" …` with a valid scheme and URI characters.
    static func isAbsoluteURI(_ text: String) -> Bool {
        guard let colon = text.firstIndex(of: ":") else { return false }
        let scheme = text[..<colon]
        guard let first = scheme.unicodeScalars.first,
            ("a"..."z").contains(Character(first)) || ("A"..."Z").contains(Character(first)),
            scheme.utf8.allSatisfy({
                (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) || $0 == 0x2B
                    || $0 == 0x2D || $0 == 0x2E
            })
        else { return false }
        return hasURICharacters(text)
    }

    /// A relative or absolute reference: URI characters only, valid percent-encodings.
    static func isURIReference(_ text: String) -> Bool {
        !text.isEmpty && hasURICharacters(text)
    }

    private static let uriExtras = Set("-._~:/?#[]@!$&'()*+,;=%".utf8)

    private static func hasURICharacters(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        var i = 0
        while i < bytes.count {
            let byte = bytes[i]
            if byte == UInt8(ascii: "%") {
                guard i + 2 < bytes.count, bytes[i + 1].isHexDigit, bytes[i + 2].isHexDigit else { return false }
                i += 3
                continue
            }
            let allowed =
                (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                || uriExtras.contains(byte)
            guard allowed else { return false }
            i += 1
        }
        return true
    }
}

extension UInt8 {
    fileprivate var isHexDigit: Bool {
        (0x30...0x39).contains(self) || (0x41...0x46).contains(self) || (0x61...0x66).contains(self)
    }
}

extension Substring {
    fileprivate var trimmingSpaces: Substring {
        var text = self
        while text.first == " " || text.first == "\t" { text.removeFirst() }
        while text.last == " " || text.last == "\t" { text.removeLast() }
        return text
    }
}
#endif
