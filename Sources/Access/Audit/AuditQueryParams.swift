import JSONRPC

extension AuditQuery {
    /// The query `audit/query`'s params ask for (protocol-spec 12.9): `principal`, `tenant`,
    /// `method` (a glob), `outcome`, `since`, `until` (ISO 8601), `limit` (1…1000, default
    /// 100), `cursor` (a page's `nextCursor`), `order` (`newest`, the default, or `oldest`). All
    /// optional; a member of the wrong type or value is `-32602`, naming it.
    ///
    /// Which tenants a caller may see is the access layer's decision, not the query's: it sets
    /// `tenant` before running the query for a caller confined to one.
    public init(params: JSONValue?) throws(JSONRPCError) {
        self.init()
        guard let params, params != .null else { return }
        guard let members = params.objectValue else { throw JSONRPCError.invalidParams("params must be an object") }
        func string(_ name: String) throws(JSONRPCError) -> String? {
            guard let value = members[name], value != .null else { return nil }
            guard let string = value.stringValue else { throw JSONRPCError.invalidParams("\(name) must be a string", extra: ["member": .string(name)]) }
            return string
        }
        func time(_ name: String) throws(JSONRPCError) -> AuditTime? {
            guard let text = try string(name) else { return nil }
            guard let time = AuditTime(iso8601: text) else {
                throw JSONRPCError.invalidParams("\(name) must be an ISO 8601 time such as 2026-03-02T09:14:05Z", extra: ["member": .string(name), name: .string(text)])
            }
            return time
        }
        principal = try string("principal")
        tenant = try string("tenant")
        method = try string("method")
        if let text = try string("outcome") {
            guard let outcome = AuditOutcome(rawValue: text) else {
                throw JSONRPCError.invalidParams("outcome must be ok, refused or failed", extra: ["member": "outcome", "outcome": .string(text)])
            }
            self.outcome = outcome
        }
        since = try time("since")
        until = try time("until")
        if let value = members["limit"], value != .null {
            guard let limit = value.integerValue, (1...Int64(Self.maximumLimit)).contains(limit) else {
                throw JSONRPCError.invalidParams("limit must be an integer from 1 to \(Self.maximumLimit)", extra: ["member": "limit"])
            }
            self.limit = Int(limit)
        }
        if let text = try string("cursor") {
            guard let after = UInt64(text) else {
                throw JSONRPCError.invalidParams("unknown cursor", extra: ["member": "cursor", "cursor": .string(text)])
            }
            self.after = after
        }
        if let text = try string("order") {
            guard let order = Order(rawValue: text) else {
                throw JSONRPCError.invalidParams("order must be newest or oldest", extra: ["member": "order", "order": .string(text)])
            }
            self.order = order
        }
    }
}
