/// Why a `TLSContext` could not be built from a `TLSConfiguration`.
///
/// `description` is a sentence for the operator: it names the file and says what is wrong with it.
public struct TLSConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of problem this is; new codes may be added.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Value: String, Sendable, Hashable {
            case missingSetting, unreadableFile, invalidPEM, keyDoesNotMatchCertificate
            case certificateExpired, certificateNotYetValid, openSSLFailure
        }

        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// A setting the role needs is absent or contradicts another one.
        public static let missingSetting = Code(.missingSetting)
        /// A path does not exist, is not a regular file, or cannot be read.
        public static let unreadableFile = Code(.unreadableFile)
        /// A file is not PEM, or holds no object of the expected kind.
        public static let invalidPEM = Code(.invalidPEM)
        /// The private key is not the key of the leaf certificate.
        public static let keyDoesNotMatchCertificate = Code(.keyDoesNotMatchCertificate)
        /// The leaf certificate's validity ended in the past.
        public static let certificateExpired = Code(.certificateExpired)
        /// The leaf certificate's validity starts in the future.
        public static let certificateNotYetValid = Code(.certificateNotYetValid)
        /// OpenSSL refused a setting for a reason of its own.
        public static let openSSLFailure = Code(.openSSLFailure)

        public var description: String { value.rawValue }
    }

    public let code: Code
    /// The file at fault, when there is one.
    public let path: String?
    /// A plain-words explanation, naming the file.
    public let reason: String

    public init(code: Code, path: String?, reason: String) {
        self.code = code
        self.path = path
        self.reason = reason
    }

    public var description: String { reason }
}
