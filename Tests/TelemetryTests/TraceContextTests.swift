import Testing

@testable import Telemetry

@Suite struct TraceContextTests {
    @Test func aWellFormedTraceparentIsTakenApart() throws {
        let context = try #require(TraceContext(traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", tracestate: "vendor=1"))
        #expect(context.traceID == "0af7651916cd43dd8448eb211c80319c")
        #expect(context.spanID == "b7ad6b7169203331")
        #expect(context.isSampled)
        #expect(context.metaMembers.map(\.0) == ["traceparent", "tracestate"])
    }

    @Test func theSampledFlagIsReadFromTheFlagsByte() throws {
        let unsampled = try #require(TraceContext(traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"))
        #expect(!unsampled.isSampled)
        let other = try #require(TraceContext(traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0b"))
        #expect(other.isSampled)
    }

    @Test(arguments: [
        "",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",  // no flags
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  // upper case
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  // zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  // zero parent id
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  // forbidden version
        "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01",  // wrong separators
        "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",  // not hex
    ])
    func aMalformedTraceparentIsIgnored(_ header: String) {
        #expect(TraceContext(traceparent: header) == nil)
    }

    @Test func anOversizeTracestateIsDropped() throws {
        let context = try #require(
            TraceContext(traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", tracestate: String(repeating: "a", count: 600)))
        #expect(context.tracestate == nil)
    }
}
