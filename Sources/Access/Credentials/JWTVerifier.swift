#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JSONRPC
import JWTKit
import Logging
import NIOCore

/// Verifies a bearer JWT: the algorithm is one we accept, the key is one the JWKS lists, the
/// signature verifies (jwt-kit does the cryptography), and then the claims (`JWTClaims`).
struct JWTVerifier: Sendable {
    let settings: JWTSettings
    let keyStore: SigningKeyStore
    private let logger: Logger

    init(settings: JWTSettings, source: JWKSSource, group: any EventLoopGroup, logger: Logger) {
        self.settings = settings
        self.keyStore = SigningKeyStore(
            source: source,
            refetchIntervalSeconds: settings.refetchIntervalSeconds,
            group: group,
            logger: logger
        )
        self.logger = logger
    }

    func verify(_ jwt: CompactJWT) async throws(AccessError) -> Principal {
        let header = try jwt.decodedHeader()
        guard let algorithmName = header["alg"]?.resolved.stringValue else {
            throw .unauthenticated(reason: "token header has no alg")
        }
        guard let algorithm = JWTSigningAlgorithm(rawValue: algorithmName) else {
            let named = algorithmName == "none" ? "none" : RefusalText.quoted(algorithmName)
            throw .unauthenticated(reason: "algorithm \(named) is not accepted (only \(JWTSigningAlgorithm.acceptedNames))")
        }
        // A critical header extension we do not implement must not be ignored (RFC 7515, 4.1.11).
        if header["crit"] != nil { throw .unauthenticated(reason: "token header has crit extensions, which are not supported") }
        let kid: String?
        switch header["kid"]?.resolved {
        case nil: kid = nil
        case .string(let value): kid = value
        default: throw .unauthenticated(reason: "token header kid must be a string")
        }

        let keys = await keyStore.keys(including: kid)
        let keyAlgorithm: JWTSigningAlgorithm
        if let kid {
            guard let known = keys.algorithms[kid] else {
                throw .unauthenticated(reason: "signing key kid=\(RefusalText.quoted(kid)) unknown")
            }
            keyAlgorithm = known
        } else {
            // Without a kid the key is unambiguous only when there is one.
            guard keys.algorithms.count == 1, let only = keys.algorithms.values.first else {
                throw .unauthenticated(reason: "token header has no kid and \(keys.algorithms.count) signing keys are loaded")
            }
            keyAlgorithm = only
        }
        guard keyAlgorithm == algorithm else {
            let key = "kid=\(RefusalText.quoted(kid ?? "")) (\(keyAlgorithm.rawValue))"
            throw .unauthenticated(reason: "algorithm \(algorithm.rawValue) does not match signing key \(key)")
        }

        do {
            _ = try await keys.collection.verify(jwt.token, as: SignatureOnly.self)
        } catch let error as JWTError where error.errorType == .signatureVerificationFailed || error.errorType == .signingAlgorithmFailure {
            throw .unauthenticated(reason: "signature does not verify")
        } catch {
            logger.debug("JWT signature check failed: \(error)")
            throw .unauthenticated(reason: "signature could not be checked")
        }
        return try JWTClaims(members: try jwt.decodedPayload()).principal(settings: settings, now: Date().timeIntervalSince1970)
    }

    /// What jwt-kit decodes the payload as: nothing. The claims are read by `JWTClaims`, with
    /// the configured claim names, after the signature is known to be good.
    private struct SignatureOnly: JWTPayload {
        init(from decoder: any Decoder) throws {}
        func encode(to encoder: any Encoder) throws {}
        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }
}
