import JSONRPC
import NIOCore

/// A token in JWS compact form: three base64url segments joined by dots. Recognising the shape
/// is what tells a JWT from an API key; decoding the header and payload checks nothing yet.
struct CompactJWT: Sendable {
    /// The token as presented, for the signature check.
    let token: String
    private let header: Substring
    private let payload: Substring

    /// Tokens longer than this are refused before any decoding (an HTTP header rarely holds more).
    static let maximumLength = 16 * 1024

    /// Nil unless `token` has the shape of a JWT. The signature segment may be empty (as in an
    /// `alg: none` token, which is recognised here so it can be refused by name).
    init?(_ token: String) {
        let segments = token.split(separator: ".", omittingEmptySubsequences: false)
        guard segments.count == 3, !segments[0].isEmpty, !segments[1].isEmpty,
            segments.allSatisfy({ $0.utf8.allSatisfy(Base64URL.isAlphabet) })
        else { return nil }
        self.token = token
        self.header = segments[0]
        self.payload = segments[1]
    }

    func decodedHeader() throws(AccessError) -> [String: JSONValue] {
        try Self.object(header, part: "header")
    }

    func decodedPayload() throws(AccessError) -> [String: JSONValue] {
        try Self.object(payload, part: "payload")
    }

    private static func object(_ segment: Substring, part: String) throws(AccessError) -> [String: JSONValue] {
        guard let bytes = Base64URL.decode(segment) else {
            throw .unauthenticated(reason: "token \(part) is not valid base64url")
        }
        guard let json = try? RawJSON(validating: ByteBuffer(bytes: bytes)), case .object(let members) = json.decoded() else {
            throw .unauthenticated(reason: "token \(part) is not a JSON object")
        }
        return members
    }
}
