/// A mistake in the `auth` section of the configuration, found while it is read, so the gateway
/// refuses to start instead of running with a credential it misread.
public struct AccessConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Where the mistake is, as the user wrote it: `auth.apiKeys[2].sha256`.
    public var path: String
    /// What is wrong there and, where it helps, what is expected: `must be 64 hex digits`.
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { "\(path): \(message)" }
}
