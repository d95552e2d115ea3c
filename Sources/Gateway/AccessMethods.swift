import Access
import JSONRPC

/// `auth/whoami` and `auth/authenticate`: who a connection is, and how it proves it;
/// `audit/query`: the trail.
enum AccessMethods {
    static func register(in table: inout MethodTable, gate: AccessGate?, quotas: QuotaKeeper?, audit: AuditTrail?) {
        table.register("auth/whoami") { request, context in
            var result = whoami(context.principal, configured: gate != nil)
            if let asked = request.params?.member("methods"), asked.kind != .null {
                let entries = asked.kind == .array ? asked.elements() : []
                let names = entries.compactMap(\.stringValue)
                guard asked.kind == .array, entries.count <= maximumAskedMethods, names.count == entries.count else {
                    return .error(.invalidParams("\"methods\" must be an array of at most \(maximumAskedMethods) strings, each METHOD or METHOD:TARGET"))
                }
                if case .object(var members) = result {
                    members["may"] = mayTable(names, grant: context.grant)
                    result = .object(members)
                }
            }
            return .result(result)
        }
        table.register("auth/authenticate") { request, context in
            guard let gate else {
                return .error(.invalidParams("this gateway has no auth section: there is nothing to authenticate against"))
            }
            guard let token = request.params?.member("token")?.stringValue, !token.isEmpty else {
                return .error(.invalidParams("auth/authenticate needs \"token\": an API key or a JWT"))
            }
            let eventLoop = context.eventLoop
            // The connection's own principal, whoever a token in this request proves.
            let current = context.connectionPrincipal
            let verified = eventLoop.makeFutureWithTask { () async throws -> (Principal, QuotaHold?) in
                let principal: Principal
                do {
                    principal = try await gate.authenticator.authenticate(token: token)
                } catch let error as AccessError {
                    throw error.jsonRPCError
                }
                // The same principal again keeps the connection it holds; another takes one of
                // its own quota (and the previous one's is given back).
                guard let quotas, !Self.isSame(principal, as: current) else { return (principal, nil) }
                return (principal, try await quotas.acquire(.connections, for: principal))
            }
            // The connection changes principal on its own event loop, before the reply goes out:
            // the next request is decided as the new principal.
            return .later(verified.hop(to: eventLoop).map { principal, hold in
                context.authenticated(principal, hold)
                context.logger.info("authenticated as \(principal.name) (\(principal.proof.rawValue), tenant \(principal.tenant))")
                return whoami(principal, configured: true)
            })
        }
        table.register("audit/query") { request, context in
            guard let audit else { return .error(.invalidParams("this gateway keeps no audit log (no audit section)")) }
            let path = audit.file
            var query: AuditQuery
            do {
                query = try AuditQuery(params: request.params.map(JSONValue.raw))
            } catch let error as JSONRPCError {
                return .error(error)
            } catch {
                return .error(.invalidParams("\(error)"))
            }
            // An admin reads every tenant's entries; anyone else allowed to query reads its own.
            if !context.grant.isUnrestricted { query.tenant = context.principal.tenant }
            let finalQuery = query
            return .later(context.eventLoop.makeFutureWithTask {
                do {
                    // What was recorded before the query is in the file when it is read.
                    await audit.log.flush()
                    return try finalQuery.page(ofFileAt: path).jsonValue
                } catch {
                    throw JSONRPCError.internalError("reading the audit log: \(error)")
                }
            })
        }
    }

    private static func isSame(_ principal: Principal, as current: Principal) -> Bool {
        principal.name == current.name && principal.proof == current.proof && principal.tenant == current.tenant
    }

    /// The most methods one `auth/whoami` asks about.
    static let maximumAskedMethods = 256

    /// What the principal may call, decided by the same rules as its requests: a console shows
    /// only the actions its user may take (and the gateway refuses the others all the same).
    static func mayTable(_ names: [String], grant: Grant) -> JSONValue {
        var may: [String: JSONValue] = [:]
        for name in names {
            let parts = name.split(separator: ":", maxSplits: 1)
            let method = parts.first.map(String.init) ?? name
            if parts.count == 2 {
                may[name] = .bool(grant.decide(method: method, targets: [String(parts[1])]) == nil)
            } else {
                // Without a target: whether some target may be (`agents/drain:search*` shows the
                // console's Drain; draining another agent is still refused).
                may[name] = .bool(grant.allowsSomeTarget(method))
            }
        }
        return .object(may)
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
