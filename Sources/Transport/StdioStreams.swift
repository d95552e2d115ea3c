#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Checks that standard input and output can carry the protocol before anything is bound to
/// them: a pipe, a socket or a terminal. `/dev/null` or a regular file would make the event loop
/// fail in ways that say nothing useful, so we refuse them with a message that does.
public enum StdioStreams {
    public struct Unsuitable: Error, Sendable, CustomStringConvertible {
        public var stream: String
        public var kind: String
        public var description: String {
            "--stdio needs \(stream) to be a pipe, a socket or a terminal, but it is \(kind); "
                + "run switchboard from an MCP host, or pipe into it (for example: printf '...' | switchboard serve --stdio)"
        }
    }

    public static func verify() throws(Unsuitable) {
        try verify(descriptor: 0, name: "standard input")
        try verify(descriptor: 1, name: "standard output")
    }

    static func verify(descriptor: Int32, name: String) throws(Unsuitable) {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            throw Unsuitable(stream: name, kind: "closed")
        }
        let type = info.st_mode & S_IFMT
        if type == S_IFIFO || type == S_IFSOCK || isatty(descriptor) == 1 { return }
        let kind: String =
            switch type {
            case S_IFREG: "a regular file"
            case S_IFCHR: "a character device such as /dev/null"
            case S_IFDIR: "a directory"
            default: "an unsupported file type"
            }
        throw Unsuitable(stream: name, kind: kind)
    }
}
