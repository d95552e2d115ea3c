import CSwitchboardOpenSSL

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads the parts of an X.509 certificate that Switchboard acts on. Every function borrows the
/// `X509 *` it is given and frees whatever it allocates itself.
enum CertificateInspection {
    /// Where `now` falls in the certificate's validity period.
    enum Validity: Equatable {
        case valid
        case expired(notAfter: String)
        case notYetValid(notBefore: String)
    }

    static func validity(of certificate: OpaquePointer) -> Validity {
        if let notAfter = X509_get0_notAfter(certificate), X509_cmp_current_time(notAfter) < 0 {
            return .expired(notAfter: format(notAfter))
        }
        if let notBefore = X509_get0_notBefore(certificate), X509_cmp_current_time(notBefore) > 0 {
            return .notYetValid(notBefore: format(notBefore))
        }
        return .valid
    }

    static func identity(of certificate: OpaquePointer) -> TLSPeerIdentity {
        var identity = TLSPeerIdentity(subject: subjectRFC2253(of: certificate), commonNames: commonNames(of: certificate))
        guard let raw = X509_get_ext_d2i(certificate, NID_subject_alt_name, nil, nil) else { return identity }
        let names = OpaquePointer(raw)
        defer { GENERAL_NAMES_free(names) }
        for index in 0..<switchboard_sk_GENERAL_NAME_num(names) {
            guard let name = switchboard_sk_GENERAL_NAME_value(names, index) else { continue }
            var type: Int32 = 0
            guard let value = GENERAL_NAME_get0_value(name, &type) else { continue }
            let bytes = stringBytes(value.assumingMemoryBound(to: ASN1_STRING.self))
            switch type {
            case GEN_DNS: identity.dnsNames.append(String(decoding: bytes, as: UTF8.self))
            case GEN_URI: identity.uris.append(String(decoding: bytes, as: UTF8.self))
            case GEN_EMAIL: identity.emailAddresses.append(String(decoding: bytes, as: UTF8.self))
            case GEN_IPADD: if let address = ipAddressText(bytes) { identity.ipAddresses.append(address) }
            default: continue
            }
        }
        return identity
    }

    static func commonNames(of certificate: OpaquePointer) -> [String] {
        guard let name = X509_get_subject_name(certificate) else { return [] }
        var names: [String] = []
        var position: Int32 = -1
        while true {
            position = X509_NAME_get_index_by_NID(name, NID_commonName, position)
            guard position >= 0, let entry = X509_NAME_get_entry(name, position), let data = X509_NAME_ENTRY_get_data(entry) else { break }
            var utf8: UnsafeMutablePointer<UInt8>?
            let length = ASN1_STRING_to_UTF8(&utf8, data)
            guard length >= 0, let utf8 else { continue }
            names.append(String(decoding: UnsafeBufferPointer(start: utf8, count: Int(length)), as: UTF8.self))
            CRYPTO_free(utf8, #file, #line)
        }
        return names
    }

    static func subjectRFC2253(of certificate: OpaquePointer) -> String {
        guard let name = X509_get_subject_name(certificate) else { return "" }
        return MemoryBIO.text { bio in
            _ = X509_NAME_print_ex(bio, name, 0, switchboard_XN_FLAG_RFC2253)
        } ?? ""
    }

    /// "2020-01-02 00:00:00 UTC", for messages.
    private static func format(_ time: UnsafePointer<ASN1_TIME>) -> String {
        var parts = tm()
        guard ASN1_TIME_to_tm(time, &parts) == 1 else { return "an unreadable date" }
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday)) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) UTC"
    }

    private static func stringBytes(_ string: UnsafePointer<ASN1_STRING>) -> [UInt8] {
        let length = Int(ASN1_STRING_length(string))
        guard length > 0, let data = ASN1_STRING_get0_data(string) else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: length))
    }

    private static func ipAddressText(_ bytes: [UInt8]) -> String? {
        let family: Int32
        switch bytes.count {
        case 4: family = AF_INET
        case 16: family = AF_INET6
        default: return nil
        }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let converted = bytes.withUnsafeBytes { address in
            inet_ntop(family, address.baseAddress, &text, socklen_t(text.count))
        }
        guard converted != nil else { return nil }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
