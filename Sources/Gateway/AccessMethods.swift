import Access
import JSONRPC

/// `auth/whoami` and `auth/authenticate`: who a connection is, and how it proves it.
enum AccessMethods {
    static func register(in table: inout MethodTable, gate: AccessGate?) {
        table.register("auth/whoami") { _, context in
            .result(whoami(context.principal, configured: gate != nil))
        }
    }

    static func whoami(_ principal: Principal, configured: Bool) -> JSONValue {
        var result: [String: JSONValue] = [
            "principal": .string(principal.name),
            "roles": .array(principal.roles.map(JSONValue.string)),
            "tenant": .string(principal.tenant),
            "proof": .string(principal.proof.rawValue),
            "authenticated": .bool(principal.proof != .anonymous),
            "accessControl": .bool(configured),
        ]
        if !principal.agentNames.isEmpty { result["agentNames"] = .array(principal.agentNames.map(JSONValue.string)) }
        if let expiresAt = principal.expiresAt { result["expiresAt"] = .double(expiresAt) }
        return .object(result)
    }
}
