import Access
import JSONRPC
import Testing

@Suite struct PolicyTests {
    private func principal(_ roles: [String]) -> Principal {
        Principal(name: "alice", roles: roles, tenant: "acme", proof: .apiKey)
    }

    @Test func globsMatchRunsAndSingleCharacters() {
        #expect(Glob("trading__*").matches("trading__buy"))
        #expect(!Glob("trading__*").matches("pricing__buy"))
        #expect(Glob("*__buy").matches("trading__buy"))
        #expect(Glob("a*b*c").matches("aXXbYYc"))
        #expect(!Glob("a*b*c").matches("aXXbYY"))
        #expect(Glob("agent-?").matches("agent-7"))
        #expect(!Glob("agent-?").matches("agent-77"))
        #expect(Glob("*").matches(""))
        // No exponential backtracking.
        #expect(!Glob("*a*a*a*a*a*a*a*a*b").matches(String(repeating: "a", count: 5_000)))
    }

    @Test func aDenyWinsOverAnAllowAndTheRefusalNamesTheRule() throws {
        let policy = try AccessPolicy(auth: [
            "roles": ["trader": ["allow": ["tools/call:trading__*", "tasks/*"], "deny": ["agents/*", "tools/call:trading__wire"]]]
        ])
        let grant = policy.grant(for: principal(["trader"]))
        #expect(grant.decide(method: "tools/call", targets: ["trading__buy"]) == nil)
        let wire = grant.decide(method: "tools/call", targets: ["trading__wire"])
        #expect(wire == .forbidden(principal: "alice", what: "tools/call trading__wire", reason: "role trader denies tools/call:trading__wire"))
        #expect(grant.decide(method: "tools/call", targets: ["pricing__quote"]) != nil)
        #expect(grant.decide(method: "agents/scale", targets: ["x"]) != nil)
        #expect(grant.decide(method: "tasks/list") == nil)
        #expect(grant.dependsOnTarget("tools/call"))
        #expect(!grant.dependsOnTarget("tasks/list"))
        // Housekeeping is always allowed.
        #expect(grant.decide(method: "ping") == nil)
    }

    @Test func aMethodAllowedForSomeTargetsIsOneTheConsoleMayOffer() throws {
        let policy = try AccessPolicy(auth: [
            "roles": [
                "trader": ["allow": ["tools/call:trading__*", "agents/drain:search*"], "deny": ["agents/scale"]],
                "locked": ["allow": ["agents/drain:search*"], "deny": ["agents/drain"]],
            ]
        ])
        let trader = policy.grant(for: principal(["trader"]))
        #expect(trader.allowsSomeTarget("tools/call"))
        #expect(trader.allowsSomeTarget("agents/drain"))
        #expect(!trader.allowsSomeTarget("agents/scale"))
        #expect(!trader.allowsSomeTarget("tasks/submit"))
        // Still decided per target.
        #expect(trader.decide(method: "agents/drain", targets: ["billing#1"]) != nil)
        // A deny without a target pattern leaves no target.
        #expect(!policy.grant(for: principal(["locked"])).allowsSomeTarget("agents/drain"))
    }

    @Test func builtInRolesGrantWhatTheirNamesSay() {
        let policy = AccessPolicy()
        let viewer = policy.grant(for: principal(["viewer"]))
        #expect(viewer.decide(method: "tools/list") == nil)
        #expect(viewer.decide(method: "tools/call", targets: ["x"]) != nil)
        #expect(viewer.decide(method: "memory/set") != nil)
        let client = policy.grant(for: principal(["client"]))
        #expect(client.decide(method: "tools/call", targets: ["x"]) == nil)
        #expect(client.decide(method: "agents/scale") != nil)
        #expect(client.decide(method: "workflows/approve") != nil)
        let operatorGrant = policy.grant(for: principal(["operator"]))
        #expect(operatorGrant.decide(method: "agents/scale") == nil)
        #expect(operatorGrant.decide(method: "workflows/approve") == nil)
        #expect(operatorGrant.decide(method: "memory/set") != nil)
        #expect(policy.grant(for: principal(["admin"])).isUnrestricted)
    }

    @Test func anonymousMayDoNothingButAuthenticateUnlessGivenARole() throws {
        let closed = try AccessPolicy(auth: ["anonymous": "none"])
        let refusal = closed.grant(for: closed.anonymous).decide(method: "tools/list")
        #expect(refusal == .forbidden(principal: "anonymous", what: "tools/list", reason: "authenticate first (auth/authenticate)"))
        #expect(closed.grant(for: closed.anonymous).decide(method: "auth/authenticate") == nil)
        let open = try AccessPolicy(auth: ["anonymous": "viewer"])
        #expect(open.grant(for: open.anonymous).decide(method: "tools/list") == nil)
    }

    @Test func mistakesInTheSectionNameTheirPlace() {
        #expect(throws: PolicyConfigurationError.self) { try AccessPolicy(auth: ["anonymous": "nobody"]) }
        do {
            _ = try AccessPolicy(auth: ["roles": ["trader": ["allow": ["tools/call", 3]]]])
            Issue.record("accepted a rule that is not a string")
        } catch {
            #expect(error.path == "auth.roles.trader.allow[1]")
        }
    }

    @Test func targetsAreReadFromTheParamsAsWritten() throws {
        let call = try RawJSON(validating: #"{"name":"trading__buy","arguments":{}}"#)
        #expect(RequestTarget.targets(method: "tools/call", params: call) == ["trading__buy"])
        let pipeline = try RawJSON(validating: #"{"stages":[{"tool":"a"},{"tool":"b"}]}"#)
        #expect(RequestTarget.targets(method: "tasks/pipeline", params: pipeline) == ["a", "b"])
        #expect(RequestTarget.targets(method: "tasks/list", params: nil) == [])
    }
}
