import Foundation
import NIOCore
import Testing
import Transport

/// `TLSContext`: what it refuses to build, and reloading certificates in place.
@Suite("TLS context")
struct TLSContextTests {
    let certificates: TLSTestCertificates

    init() throws {
        certificates = try TLSTestCertificates.shared()
    }

    private func serverError(certificate: String, key: String, trustRoots: String? = nil) -> TLSConfigurationError? {
        do {
            _ = try TLSContext(server: .server(certificateChainPath: certificate, privateKeyPath: key, trustRootsPath: trustRoots))
            return nil
        } catch {
            return error
        }
    }

    @Test func buildsFromAChainFile() throws {
        let context = try TLSContext(server: .server(certificateChainPath: certificates.serverChain, privateKeyPath: certificates.serverKey))
        #expect(context.role == .server)
        let pair = try InMemoryTLSPair(client: .testClient(certificates), server: context)
        try pair.handshake()
        #expect(pair.clientEvents.handshake?.peer?.subject == "CN=localhost")
    }

    @Test func namesAFileThatDoesNotExist() throws {
        let missing = certificates.path("nowhere.pem")
        let error = try #require(serverError(certificate: missing, key: certificates.serverKey))
        #expect(error.code == .unreadableFile)
        #expect(error.path == missing)
        #expect(error.reason == "the certificate chain file \(missing) does not exist")

        let missingKey = try #require(serverError(certificate: certificates.serverCertificate, key: missing))
        #expect(missingKey.reason == "the private key file \(missing) does not exist")

        let missingBundle = try #require(serverError(certificate: certificates.serverCertificate, key: certificates.serverKey, trustRoots: missing))
        #expect(missingBundle.reason == "the CA bundle \(missing) does not exist")
    }

    @Test func refusesADirectoryForAFile() throws {
        let error = try #require(serverError(certificate: certificates.directory, key: certificates.serverKey))
        #expect(error.code == .unreadableFile)
        #expect(error.reason == "the certificate chain file \(certificates.directory) is not a regular file")
    }

    @Test func refusesAKeyThatDoesNotMatchTheCertificate() throws {
        let error = try #require(serverError(certificate: certificates.serverCertificate, key: certificates.clientKey))
        #expect(error.code == .keyDoesNotMatchCertificate)
        #expect(error.reason == "the private key in \(certificates.clientKey) does not match the certificate in \(certificates.serverCertificate)")
    }

    @Test func refusesAnExpiredCertificate() throws {
        let error = try #require(serverError(certificate: certificates.expiredCertificate, key: certificates.expiredKey))
        #expect(error.code == .certificateExpired)
        #expect(error.reason == "the certificate in \(certificates.expiredCertificate) expired on 2020-01-02 00:00:00 UTC; renew it")
    }

    @Test func refusesACertificateNotYetValid() throws {
        let error = try #require(serverError(certificate: certificates.futureCertificate, key: certificates.futureKey))
        #expect(error.code == .certificateNotYetValid)
        #expect(error.reason.hasPrefix("the certificate in \(certificates.futureCertificate) is not valid until 2099-01-01 00:00:00 UTC"))
    }

    @Test func refusesFilesThatAreNotPEM() throws {
        let certificate = try #require(serverError(certificate: certificates.notPEM, key: certificates.serverKey))
        #expect(certificate.code == .invalidPEM)
        #expect(certificate.reason == "the certificate chain file \(certificates.notPEM) is not PEM: no \"-----BEGIN CERTIFICATE-----\" line")

        let key = try #require(serverError(certificate: certificates.serverCertificate, key: certificates.notPEM))
        #expect(key.code == .invalidPEM)
        #expect(key.reason.hasPrefix("the private key file \(certificates.notPEM) holds no PEM private key"))

        let bundle = try #require(serverError(certificate: certificates.serverCertificate, key: certificates.serverKey, trustRoots: certificates.notPEM))
        #expect(bundle.code == .invalidPEM)
        #expect(bundle.reason.hasPrefix("the CA bundle \(certificates.notPEM)"))
    }

    @Test func refusesAnEncryptedKeyInsteadOfPromptingForItsPassphrase() throws {
        let error = try #require(serverError(certificate: certificates.serverCertificate, key: certificates.encryptedKey))
        #expect(error.code == .invalidPEM)
        #expect(error.reason.hasPrefix("the private key in \(certificates.encryptedKey) is encrypted"))
    }

    @Test func refusesContradictorySettings() throws {
        #expect(throws: TLSConfigurationError.self) { try TLSContext(server: TLSConfiguration()) }
        do {
            _ = try TLSContext(
                server: .server(
                    certificateChainPath: certificates.serverCertificate, privateKeyPath: certificates.serverKey,
                    clientAuthentication: .require
                )
            )
            Issue.record("client authentication without a CA bundle was accepted")
        } catch {
            #expect(error.code == .missingSetting)
            #expect(error.reason == "client authentication 'require' needs a CA bundle to verify client certificates against")
        }
        var inverted = TLSConfiguration.client(trustRootsPath: certificates.caCertificate)
        inverted.minimumProtocolVersion = .tls1_3
        inverted.maximumProtocolVersion = .tls1_2
        #expect(throws: TLSConfigurationError.self) { try TLSContext(client: inverted) }
        #expect(throws: TLSConfigurationError.self) {
            try TLSContext(client: .client(certificateChainPath: certificates.clientCertificate))
        }
    }

    @Test func reloadSwapsTheCertificateForNewConnectionsOnly() throws {
        // The context reads these paths; the test rewrites them as a renewal would.
        let directory = certificates.path("reload-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let certificatePath = directory + "/cert.pem", keyPath = directory + "/key.pem"
        try FileManager.default.copyItem(atPath: certificates.serverCertificate, toPath: certificatePath)
        try FileManager.default.copyItem(atPath: certificates.serverKey, toPath: keyPath)
        let server = try TLSContext(server: .server(certificateChainPath: certificatePath, privateKeyPath: keyPath))
        let client = try TLSContext.testClient(certificates)

        let before = try InMemoryTLSPair(client: client, server: server)
        try before.handshake()
        #expect(before.clientEvents.handshake?.peer?.subject == "CN=localhost")

        try FileManager.default.removeItem(atPath: certificatePath)
        try FileManager.default.removeItem(atPath: keyPath)
        try FileManager.default.copyItem(atPath: certificates.reloadedServerCertificate, toPath: certificatePath)
        try FileManager.default.copyItem(atPath: certificates.reloadedServerKey, toPath: keyPath)
        try server.reload()

        let after = try InMemoryTLSPair(client: client, server: server)
        try after.handshake()
        #expect(after.clientEvents.handshake?.peer?.subject == "CN=reloaded.localhost")

        // The connection made before the reload carries on with its own context.
        try before.send("still working\n", from: before.client)
        #expect(before.serverEvents.receivedText == "still working\n")
    }

    @Test func aFailedReloadKeepsTheContextInUse() throws {
        let directory = certificates.path("reload-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let certificatePath = directory + "/cert.pem", keyPath = directory + "/key.pem"
        try FileManager.default.copyItem(atPath: certificates.serverCertificate, toPath: certificatePath)
        try FileManager.default.copyItem(atPath: certificates.serverKey, toPath: keyPath)
        let server = try TLSContext(server: .server(certificateChainPath: certificatePath, privateKeyPath: keyPath))

        // A renewal half done: the new certificate is in place, its key is not.
        try FileManager.default.removeItem(atPath: certificatePath)
        try FileManager.default.copyItem(atPath: certificates.reloadedServerCertificate, toPath: certificatePath)
        do {
            try server.reload()
            Issue.record("a reload with a mismatched key succeeded")
        } catch {
            #expect(error.code == .keyDoesNotMatchCertificate)
        }

        let pair = try InMemoryTLSPair(client: .testClient(certificates), server: server)
        try pair.handshake()
        #expect(pair.clientEvents.handshake?.peer?.subject == "CN=localhost")
    }
}
