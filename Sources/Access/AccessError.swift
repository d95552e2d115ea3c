import JSONRPC

/// Refusals of the access layer, in their JSON-RPC form (protocol-spec chapter 12).
public enum AccessError: Error, Sendable, Equatable {
    /// No credential, or one that does not verify. `reason` says which check failed; it never
    /// repeats the credential.
    case unauthenticated(reason: String)
    /// The principal may not do this: `what` names what was refused (a method, a tool, a
    /// namespace…), `reason` why (the rule, or the role that lacks it).
    case forbidden(principal: String, what: String, reason: String)
    /// A rate limit or a quota is reached; `retryAfterSeconds` when waiting helps.
    case limited(principal: String, limit: String, reason: String, retryAfterSeconds: Double?)

    public static let unauthenticatedCode = -32007
    public static let forbiddenCode = -32005
    public static let limitedCode = -32008

    public var jsonRPCError: JSONRPCError {
        switch self {
        case .unauthenticated(let reason):
            return JSONRPCError(code: Self.unauthenticatedCode, message: "Unauthenticated: \(reason)", data: .object(["reason": .string(reason)]))
        case .forbidden(let principal, let what, let reason):
            return JSONRPCError(
                code: Self.forbiddenCode,
                message: "Forbidden: \(principal) may not \(what): \(reason)",
                data: .object(["principal": .string(principal), "refused": .string(what), "reason": .string(reason)])
            )
        case .limited(let principal, let limit, let reason, let retryAfter):
            var data: [String: JSONValue] = ["principal": .string(principal), "limit": .string(limit), "reason": .string(reason)]
            if let retryAfter { data["retryAfterMs"] = .integer(Int64((retryAfter * 1000).rounded(.up))) }
            return JSONRPCError(code: Self.limitedCode, message: "Limited: \(reason)", data: .object(data))
        }
    }
}
