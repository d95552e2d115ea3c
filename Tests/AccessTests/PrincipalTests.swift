import Access
import Testing

@Suite struct PrincipalTests {
    @Test func refusalsNameWhatWasRefusedAndWhy() {
        let error = AccessError.forbidden(principal: "alice", what: "tools/call trading__buy", reason: "role client has no rule allowing it").jsonRPCError
        #expect(error.code == -32005)
        #expect(error.message.contains("alice may not tools/call trading__buy"))
        let limited = AccessError.limited(principal: "alice", limit: "rate", reason: "50 requests per second", retryAfterSeconds: 0.0201).jsonRPCError
        #expect(limited.data?["retryAfterMs"]?.integerValue == 21)
    }
}
