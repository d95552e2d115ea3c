/// W3C trace context as it travels in MCP: `params._meta.traceparent` and `tracestate` (the
/// 2026-07-28 revision's place for it, which older peers carry the same way), or the HTTP headers
/// of the same names.
public struct TraceContext: Sendable, Equatable {
    /// `00-<trace-id>-<parent-id>-<flags>`, validated.
    public var traceparent: String
    public var tracestate: String?

    /// Nil unless `traceparent` is a well-formed version-00 header with non-zero ids (a malformed
    /// one is ignored, as the W3C recommendation says: the request starts a new trace).
    public init?(traceparent: String, tracestate: String? = nil) {
        let bytes = Array(traceparent.utf8)
        guard bytes.count == 55, bytes[2] == UInt8(ascii: "-"), bytes[35] == UInt8(ascii: "-"), bytes[52] == UInt8(ascii: "-") else { return nil }
        func isLowerHex(_ range: Range<Int>) -> Bool {
            bytes[range].allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }
        }
        func isZero(_ range: Range<Int>) -> Bool { bytes[range].allSatisfy { $0 == UInt8(ascii: "0") } }
        guard isLowerHex(0..<2), isLowerHex(3..<35), isLowerHex(36..<52), isLowerHex(53..<55) else { return nil }
        // Version ff is forbidden; ids of zeros are invalid.
        guard !(bytes[0] == UInt8(ascii: "f") && bytes[1] == UInt8(ascii: "f")), !isZero(3..<35), !isZero(36..<52) else { return nil }
        self.traceparent = traceparent
        self.tracestate = tracestate.flatMap { $0.isEmpty || $0.utf8.count > 512 ? nil : $0 }
    }

    /// 32 lowercase hex digits.
    public var traceID: Substring { traceparent.dropFirst(3).prefix(32) }
    /// The parent's span id: 16 lowercase hex digits.
    public var spanID: Substring { traceparent.dropFirst(36).prefix(16) }
    public var isSampled: Bool { traceparent.utf8.last.map { ($0 - (($0 >= UInt8(ascii: "a")) ? 87 : 48)) & 1 == 1 } ?? false }

    /// The members of `_meta` that carry it.
    public var metaMembers: [(String, String)] {
        var members = [("traceparent", traceparent)]
        if let tracestate { members.append(("tracestate", tracestate)) }
        return members
    }
}
