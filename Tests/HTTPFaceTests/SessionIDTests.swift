import Crypto
import Testing

@testable import HTTPFace

@Suite struct SessionIDTests {
    let key = SymmetricKey(size: .bits256)

    @Test func aSessionIDVerifiesWithItsKeyAndCarriesItsVersion() throws {
        let id = SessionID(protocolVersion: "2025-06-18", capabilities: [.sampling, .roots], key: key)
        #expect(id.text.utf8.count == 46)
        #expect(id.text.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F })
        let verified = try #require(SessionID(verifying: id.text, key: key))
        #expect(verified.protocolVersion == "2025-06-18")
        #expect(verified.capabilities == [.sampling, .roots])
    }

    @Test func anotherKeyOrAChangedIDIsRefused() {
        let id = SessionID(protocolVersion: "2025-11-25", capabilities: [], key: key)
        #expect(SessionID(verifying: id.text, key: SymmetricKey(size: .bits256)) == nil)
        var bytes = Array(id.text.utf8)
        bytes[3] = bytes[3] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        #expect(SessionID(verifying: String(decoding: bytes, as: UTF8.self), key: key) == nil)
        #expect(SessionID(verifying: "not-a-session", key: key) == nil)
    }

    @Test func idsAreNotRepeated() {
        let ids = Set((0..<1000).map { _ in SessionID(protocolVersion: "2025-11-25", capabilities: [], key: key).text })
        #expect(ids.count == 1000)
    }
}

@Suite struct OriginTests {
    @Test func loopbackOriginsAreAllowedByDefault() {
        let settings = HTTPFaceSettings()
        for origin in ["http://localhost:3000", "http://127.0.0.1", "https://[::1]:8443", "http://localhost"] {
            #expect(settings.allows(origin: origin), "\(origin)")
        }
        for origin in ["http://evil.example", "http://localhost.evil.example", "http://127.0.0.1.evil.example", "null", "http://localhost:80x"] {
            #expect(!settings.allows(origin: origin), "\(origin)")
        }
    }

    @Test func configuredOriginsReplaceTheLoopbackDefault() {
        var settings = HTTPFaceSettings()
        settings.allowedOrigins = ["https://console.example"]
        #expect(settings.allows(origin: "https://console.example"))
        #expect(!settings.allows(origin: "http://localhost:3000"))
        settings.allowedOrigins = ["*"]
        #expect(settings.allows(origin: "http://anything.example"))
    }
}
