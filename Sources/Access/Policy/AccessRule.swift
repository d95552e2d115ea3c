/// One rule of a role: a method pattern and, optionally, a pattern over what the request acts
/// on (its target: a tool, a namespace, a workflow, an agent…). `tools/call:trading__*` allows
/// calling the `trading__` tools; `tasks/*` every task method whatever its target.
public struct AccessRule: Sendable, Hashable, CustomStringConvertible {
    public let method: Glob
    /// Nil: any target, and requests with none.
    public let target: Glob?

    public init(_ text: String) {
        // The method part never holds a colon; a target may (namespaces such as `tenant:acme`).
        if let colon = text.firstIndex(of: ":") {
            method = Glob(String(text[..<colon]))
            target = Glob(String(text[text.index(after: colon)...]))
        } else {
            method = Glob(text)
            target = nil
        }
    }

    public var description: String {
        target.map { "\(method):\($0)" } ?? method.pattern
    }

    /// A rule with a target pattern applies only to requests that name a target matching it.
    public func matches(method name: String, target requested: String?) -> Bool {
        guard method.matches(name) else { return false }
        guard let target else { return true }
        guard let requested else { return false }
        return target.matches(requested)
    }
}
