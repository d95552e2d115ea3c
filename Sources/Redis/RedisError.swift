/// A failure of a Redis command or connection: a `code` to act on and a message for a person.
public struct RedisError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is; extensible without breaking callers.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The server answered with an error reply; `message` is the reply's text.
        public static let serverError = Code("serverError")
        /// The bytes from the server were not valid RESP; the connection is closed.
        public static let protocolError = Code("protocolError")
        /// The connection closed after the command was written: its outcome is unknown.
        public static let connectionClosed = Code("connectionClosed")
        /// The connection was already closed, so the command was never written; safe to retry.
        public static let notConnected = Code("notConnected")
        /// The command's deadline passed; the connection is closed, as later replies can no longer be matched.
        public static let timeout = Code("timeout")
        /// The TCP, Unix-socket or TLS connection could not be established.
        public static let connectFailed = Code("connectFailed")
        /// AUTH or SELECT was refused while setting up the connection.
        public static let handshakeFailed = Code("handshakeFailed")
        /// A `redis://`, `rediss://` or `unix://` URL could not be parsed.
        public static let invalidURL = Code("invalidURL")
        /// A command could not be encoded.
        public static let invalidCommand = Code("invalidCommand")
        /// A reply had a shape the caller did not expect.
        public static let unexpectedReply = Code("unexpectedReply")
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "Redis \(code): \(message)" }
}
