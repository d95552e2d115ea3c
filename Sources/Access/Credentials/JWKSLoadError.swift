/// Why the signing keys could not be loaded (file unreadable, URL unreachable, document
/// unusable). The keys loaded before stay in use.
public struct JWKSLoadError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}
