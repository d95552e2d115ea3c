import Crypto
import MCPProtocol

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// An MCP session id that carries what a replica needs to serve the session: the negotiated
/// protocol version and what the client said it can do, signed with the key replicas share.
///
/// Why self-contained and not a record in Redis: every request of a session names it, and a
/// lookup in Redis would add a round trip to each; a signed id costs one HMAC, and a replica
/// that has never seen the session serves it at once. What the id cannot hold — the GET stream,
/// events kept for resumption — lives on the replica that holds the stream, which is also
/// where a client resuming that stream reconnects (a load balancer keeps a stream's
/// connection where it is).
///
/// The id is 16 random bytes (the session's identity, from the system's CSPRNG), the version,
/// the capability flags, and the first 16 bytes of HMAC-SHA256 over them: 46 characters of
/// base64url, visible ASCII as the specification requires.
public struct SessionID: Sendable, Hashable {
    public struct Capabilities: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let sampling = Capabilities(rawValue: 1)
        public static let elicitation = Capabilities(rawValue: 2)
        public static let roots = Capabilities(rawValue: 4)
    }

    public let text: String
    public let protocolVersion: String
    public let capabilities: Capabilities

    private static let macBytes = 16

    /// A new session at `protocolVersion` (a handshake-era version).
    public init(protocolVersion: String, capabilities: Capabilities, key: SymmetricKey) {
        var payload = [UInt8](repeating: 0, count: 18)
        var generator = SystemRandomNumberGenerator()
        for index in 0..<16 { payload[index] = generator.next() }
        payload[16] = UInt8(ProtocolVersion.handshake.firstIndex(of: protocolVersion) ?? ProtocolVersion.handshake.count - 1)
        payload[17] = capabilities.rawValue
        let mac = HMAC<SHA256>.authenticationCode(for: payload, using: key)
        let bytes = payload + Array(mac.prefix(Self.macBytes))
        self.text = Self.base64URL(bytes)
        self.protocolVersion = ProtocolVersion.handshake[Int(payload[16])]
        self.capabilities = capabilities
    }

    /// The session `text` names, if a replica sharing `key` issued it.
    public init?(verifying text: String, key: SymmetricKey) {
        guard text.utf8.count == 46, let bytes = Self.decodeBase64URL(text), bytes.count == 34 else { return nil }
        let payload = Array(bytes[0..<18])
        let mac = HMAC<SHA256>.authenticationCode(for: payload, using: key)
        // Compared in constant time: the id is a bearer of the session.
        var difference: UInt8 = 0
        for (index, byte) in mac.prefix(Self.macBytes).enumerated() { difference |= byte ^ bytes[18 + index] }
        guard difference == 0, Int(payload[16]) < ProtocolVersion.handshake.count else { return nil }
        self.text = text
        self.protocolVersion = ProtocolVersion.handshake[Int(payload[16])]
        self.capabilities = Capabilities(rawValue: payload[17])
    }

    private static func base64URL(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacing("+", with: "-")
            .replacing("/", with: "_")
            .replacing("=", with: "")
    }

    private static func decodeBase64URL(_ text: String) -> [UInt8]? {
        var standard = text.replacing("-", with: "+").replacing("_", with: "/")
        while standard.utf8.count % 4 != 0 { standard += "=" }
        return Data(base64Encoded: standard).map(Array.init)
    }
}
