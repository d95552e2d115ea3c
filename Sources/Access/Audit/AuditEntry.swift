import Crypto
import JSONRPC
import NIOCore

/// One record of the audit log: an `AuditEvent` with its place in the chain.
///
/// An entry is one line of JSON with its members always present, always in this order (`null`
/// where a value is absent):
///
///     sequence, time, principal, tenant, proof, method, target, outcome, error, requestId,
///     connection, replica, previousHash, hash
///
/// written compactly (no spaces), strings escaped as JSON requires and no more (`"`, `\`, and
/// control characters: `\n \r \t \b \f` by name, the others as `\u00xx`), `error` as
/// `{"code":…,"message":…}`, `requestId` as the client wrote it. `hash` is the lowercase hex
/// SHA-256 of the entry written without its `hash` member — the line up to and including the
/// `previousHash` member, closed with `}` — so any change to any byte of the line shows.
/// `previousHash` is the `hash` of the entry before (64 zeros for the first), which chains the
/// entries: removing or reordering lines shows too. Protocol-spec section 12.9.
@dynamicMemberLookup
public struct AuditEntry: Sendable, Hashable {
    /// 1 for the first entry of a file, one more for each entry after it.
    public var sequence: UInt64
    public var time: AuditTime
    public var event: AuditEvent
    public var previousHash: String
    public var hash: String

    /// The `previousHash` of a file's first entry.
    public static let firstPreviousHash = String(repeating: "0", count: 64)

    /// An entry chained after `previousHash`: its hash is computed here.
    public init(sequence: UInt64, time: AuditTime, event: AuditEvent, previousHash: String) {
        self.sequence = sequence
        self.time = time
        self.event = event
        self.previousHash = previousHash
        self.hash = ""
        var unhashed = ByteBuffer()
        unhashed.reserveCapacity(512)
        writeUnhashed(to: &unhashed)
        self.hash = unhashed.withUnsafeReadableBytes { Self.hexSHA256($0) }
    }

    /// An entry as read back, hash included (nothing is checked).
    public init(sequence: UInt64, time: AuditTime, event: AuditEvent, previousHash: String, hash: String) {
        self.sequence = sequence
        self.time = time
        self.event = event
        self.previousHash = previousHash
        self.hash = hash
    }

    public subscript<Value>(dynamicMember keyPath: KeyPath<AuditEvent, Value>) -> Value {
        event[keyPath: keyPath]
    }

    /// The whole line without its newline, hash included.
    public var json: RawJSON {
        var buffer = ByteBuffer()
        writeLine(to: &buffer, newline: false)
        return RawJSON(unchecked: buffer)
    }

    /// The line as it is appended to the file.
    public func writeLine(to buffer: inout ByteBuffer, newline: Bool = true) {
        writeMembers(to: &buffer)
        buffer.writeStaticString(",\"hash\":")
        buffer.writeJSONString(hash)
        buffer.writeStaticString(newline ? "}\n" : "}")
    }

    /// The bytes `hash` is computed from: the entry without its `hash` member.
    func writeUnhashed(to buffer: inout ByteBuffer) {
        writeMembers(to: &buffer)
        buffer.writeInteger(UInt8(ascii: "}"))
    }

    private func writeMembers(to buffer: inout ByteBuffer) {
        buffer.writeStaticString("{\"sequence\":")
        buffer.writeString(String(sequence))
        buffer.writeStaticString(",\"time\":")
        buffer.writeJSONString(time.description)
        buffer.writeStaticString(",\"principal\":")
        buffer.writeJSONString(event.principal)
        buffer.writeStaticString(",\"tenant\":")
        buffer.writeJSONString(event.tenant)
        buffer.writeStaticString(",\"proof\":")
        buffer.writeJSONString(event.proof)
        buffer.writeStaticString(",\"method\":")
        buffer.writeJSONString(event.method)
        buffer.writeStaticString(",\"target\":")
        buffer.writeOptionalJSONString(event.target)
        buffer.writeStaticString(",\"outcome\":")
        buffer.writeJSONString(event.outcome.rawValue)
        buffer.writeStaticString(",\"error\":")
        if let error = event.error {
            buffer.writeStaticString("{\"code\":")
            buffer.writeString(String(error.code))
            buffer.writeStaticString(",\"message\":")
            buffer.writeJSONString(error.message)
            buffer.writeInteger(UInt8(ascii: "}"))
        } else {
            buffer.writeStaticString("null")
        }
        buffer.writeStaticString(",\"requestId\":")
        if let requestID = event.requestID { requestID.write(to: &buffer) } else { buffer.writeStaticString("null") }
        buffer.writeStaticString(",\"connection\":")
        if let connection = event.connection { buffer.writeString(String(connection)) } else { buffer.writeStaticString("null") }
        buffer.writeStaticString(",\"replica\":")
        buffer.writeOptionalJSONString(event.replica)
        buffer.writeStaticString(",\"previousHash\":")
        buffer.writeJSONString(previousHash)
    }

    static func hexSHA256(_ bytes: UnsafeRawBufferPointer) -> String {
        var hasher = SHA256()
        hasher.update(bufferPointer: bytes)
        let digest = hasher.finalize()
        var hex = ""
        hex.reserveCapacity(64)
        for byte in digest {
            hex.append(hexDigits[Int(byte >> 4)])
            hex.append(hexDigits[Int(byte & 0xF)])
        }
        return hex
    }

    private static let hexDigits: [Character] = Array("0123456789abcdef")
}

extension ByteBuffer {
    fileprivate mutating func writeOptionalJSONString(_ string: String?) {
        if let string { writeJSONString(string) } else { writeStaticString("null") }
    }
}
