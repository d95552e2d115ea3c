/// A pattern over names: `*` matches any run of characters (slashes included), `?` one
/// character, anything else itself. `trading__*`, `agents/*`, `*`.
public struct Glob: Sendable, Hashable, CustomStringConvertible {
    public let pattern: String
    private let form: Form

    private enum Form: Hashable {
        case anything
        case exact(String)
        case prefix(String)
        case general([UInt8])
    }

    public init(_ pattern: String) {
        self.pattern = pattern
        let wildcards = pattern.utf8.filter { $0 == UInt8(ascii: "*") || $0 == UInt8(ascii: "?") }.count
        if pattern == "*" {
            form = .anything
        } else if wildcards == 0 {
            form = .exact(pattern)
        } else if wildcards == 1, pattern.hasSuffix("*") {
            form = .prefix(String(pattern.dropLast()))
        } else {
            form = .general(Array(pattern.utf8))
        }
    }

    public var description: String { pattern }

    public func matches(_ name: String) -> Bool {
        switch form {
        case .anything: return true
        case .exact(let text): return name == text
        case .prefix(let prefix): return name.hasPrefix(prefix)
        case .general(let pattern):
            var name = name
            return name.withUTF8 { Self.match(pattern[...], $0[...]) }
        }
    }

    /// Iterative matching with one backtrack point (the last `*`): linear in practice, never
    /// exponential whatever the pattern.
    private static func match(_ pattern: ArraySlice<UInt8>, _ name: Slice<UnsafeBufferPointer<UInt8>>) -> Bool {
        var p = pattern.startIndex
        var n = name.startIndex
        var star: Int?
        var resume = n
        while n < name.endIndex {
            if p < pattern.endIndex, pattern[p] == UInt8(ascii: "?") || pattern[p] == name[n], pattern[p] != UInt8(ascii: "*") {
                p += 1
                n += 1
            } else if p < pattern.endIndex, pattern[p] == UInt8(ascii: "*") {
                star = p
                p += 1
                resume = n
            } else if let star {
                p = star + 1
                resume += 1
                n = resume
            } else {
                return false
            }
        }
        while p < pattern.endIndex, pattern[p] == UInt8(ascii: "*") { p += 1 }
        return p == pattern.endIndex
    }
}
