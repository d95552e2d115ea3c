#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import JSONRPC
import NIOCore

/// Why a line is not an audit entry as the log writes it.
struct AuditLineError: Error, Sendable, Equatable, CustomStringConvertible {
    var description: String
}

/// Reads one line of an audit file (without its newline) back into an `AuditEntry`, strictly: the
/// members, their order, their types and the bytes must be exactly what `AuditEntry.writeLine`
/// writes. Anything else is a line the log did not write.
enum AuditLineReading {
    /// `,"hash":"` + 64 hex digits + `"}`: how every line ends.
    private static let hashSuffixLength = 75

    static let memberNames = [
        "sequence", "time", "principal", "tenant", "proof", "method", "target", "outcome", "error", "requestId",
        "connection", "replica", "previousHash", "hash",
    ]

    /// The hash a line states and the hash of its bytes; nil when the line does not end with a
    /// `hash` member. Checked before the line is parsed, so that a changed byte is reported as a
    /// change even where it also breaks the JSON.
    static func hashes(of line: UnsafeRawBufferPointer) -> (stated: String, computed: String)? {
        guard line.count > hashSuffixLength else { return nil }
        let suffixStart = line.count - hashSuffixLength
        let head = Array(",\"hash\":\"".utf8)
        for (offset, byte) in head.enumerated() where line[suffixStart + offset] != byte { return nil }
        guard line[line.count - 2] == UInt8(ascii: "\""), line[line.count - 1] == UInt8(ascii: "}") else { return nil }
        let stated = String(decoding: UnsafeRawBufferPointer(rebasing: line[(suffixStart + head.count)..<(line.count - 2)]), as: UTF8.self)
        var unhashed = ByteBuffer()
        unhashed.writeBytes(UnsafeRawBufferPointer(rebasing: line[0..<suffixStart]))
        unhashed.writeInteger(UInt8(ascii: "}"))
        let computed = unhashed.withUnsafeReadableBytes { AuditEntry.hexSHA256($0) }
        return (stated, computed)
    }

    /// The `sequence` of a line that starts as an entry does, without reading the rest: enough to
    /// look ahead for a missing entry.
    static func leadingSequence(of line: UnsafeRawBufferPointer) -> UInt64? {
        let prefix = Array("{\"sequence\":".utf8)
        guard line.count > prefix.count, line.starts(with: prefix) else { return nil }
        var value: UInt64 = 0
        var index = prefix.count
        while index < line.count, let digit = line[index].decimalDigit {
            let (times, overflow) = value.multipliedReportingOverflow(by: 10)
            guard !overflow else { return nil }
            value = times + UInt64(digit)
            index += 1
        }
        return index > prefix.count ? value : nil
    }

    /// The entry a line holds. Its hash is taken as stated, not checked (`hashes(of:)` does that).
    static func entry(from line: UnsafeRawBufferPointer) throws(AuditLineError) -> AuditEntry {
        let scanner = JSONScanner(bytes: line, maximumDepth: 4)
        var members: [(name: String, value: Range<Int>)] = []
        do throws(JSONSyntaxError) {
            guard line.first == UInt8(ascii: "{") else { throw JSONSyntaxError(.expectedMemberName, at: 0) }
            let end = try scanner.forEachMember(ofObjectAt: 0) { name, value in
                members.append((scanner.decodeString(name), value))
            }
            try scanner.expectEnd(from: end)
        } catch {
            throw AuditLineError(description: "not a JSON object: \(error.reason) at column \(error.offset + 1)")
        }
        let names = members.map(\.name)
        guard names == memberNames else {
            throw AuditLineError(description: "members are \(names.joined(separator: ",")); an entry has \(memberNames.joined(separator: ",")) in that order")
        }
        var fields = FieldReader(scanner: scanner, members: members)
        let entry = AuditEntry(
            sequence: try fields.unsigned("sequence"),
            time: try fields.time("time"),
            event: AuditEvent(
                principal: try fields.string("principal"),
                tenant: try fields.string("tenant"),
                proof: try fields.string("proof"),
                method: try fields.string("method"),
                target: try fields.optionalString("target"),
                outcome: try fields.outcome("outcome"),
                error: try fields.error("error"),
                requestID: try fields.requestID("requestId"),
                connection: try fields.optionalUnsigned("connection"),
                replica: try fields.optionalString("replica")
            ),
            previousHash: try fields.hash("previousHash"),
            hash: try fields.string("hash")
        )
        // Equivalent JSON written differently (spaces, other escapes) would hash differently.
        var canonical = ByteBuffer()
        canonical.reserveCapacity(line.count + 1)
        entry.writeLine(to: &canonical, newline: false)
        let isCanonical = canonical.withUnsafeReadableBytes { written in
            written.count == line.count && (line.isEmpty || memcmp(written.baseAddress!, line.baseAddress!, line.count) == 0)
        }
        guard isCanonical else {
            throw AuditLineError(description: "not written as the log writes entries (spacing, escapes or number form differ)")
        }
        return entry
    }

    /// Reads the members of one entry, in order.
    private struct FieldReader {
        let scanner: JSONScanner
        let members: [(name: String, value: Range<Int>)]
        var next = 0

        /// The next member's value; the names and their order are already checked.
        private mutating func take(_ name: String) -> Range<Int> {
            defer { next += 1 }
            assert(members[next].name == name)
            return members[next].value
        }

        private func text(_ range: Range<Int>) -> String {
            String(decoding: UnsafeRawBufferPointer(rebasing: scanner.bytes[range]), as: UTF8.self)
        }

        private func isNull(_ range: Range<Int>) -> Bool { text(range) == "null" }

        private func stringValue(_ range: Range<Int>, _ name: String) throws(AuditLineError) -> String {
            let bytes = UnsafeRawBufferPointer(rebasing: scanner.bytes[range])
            if bytes.count >= 2, bytes.first == UInt8(ascii: "\""), !bytes.contains(UInt8(ascii: "\\")) {
                return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[1..<(bytes.count - 1)]), as: UTF8.self)
            }
            let value = RawJSON(unchecked: ByteBuffer(bytes: bytes))
            guard let string = value.stringValue else { throw AuditLineError(description: "\(name) is not a string") }
            return string
        }

        private func unsignedValue(_ range: Range<Int>, _ name: String) throws(AuditLineError) -> UInt64 {
            guard let value = UInt64(text(range)) else { throw AuditLineError(description: "\(name) is not a whole number ≥ 0") }
            return value
        }

        mutating func string(_ name: String) throws(AuditLineError) -> String {
            try stringValue(take(name), name)
        }

        mutating func optionalString(_ name: String) throws(AuditLineError) -> String? {
            let range = take(name)
            return isNull(range) ? nil : try stringValue(range, name)
        }

        mutating func unsigned(_ name: String) throws(AuditLineError) -> UInt64 {
            try unsignedValue(take(name), name)
        }

        mutating func optionalUnsigned(_ name: String) throws(AuditLineError) -> UInt64? {
            let range = take(name)
            return isNull(range) ? nil : try unsignedValue(range, name)
        }

        mutating func time(_ name: String) throws(AuditLineError) -> AuditTime {
            let text = try string(name)
            guard let time = AuditTime(canonical: text) else {
                throw AuditLineError(description: "\(name) \(text) is not YYYY-MM-DDTHH:MM:SS.mmmZ")
            }
            return time
        }

        mutating func outcome(_ name: String) throws(AuditLineError) -> AuditOutcome {
            let text = try string(name)
            guard let outcome = AuditOutcome(rawValue: text) else {
                throw AuditLineError(description: "\(name) \(text) is not ok, refused or failed")
            }
            return outcome
        }

        mutating func hash(_ name: String) throws(AuditLineError) -> String {
            let text = try string(name)
            guard text.utf8.count == 64, text.utf8.allSatisfy({ $0.lowercaseHexDigit != nil }) else {
                throw AuditLineError(description: "\(name) is not 64 lowercase hex digits")
            }
            return text
        }

        mutating func error(_ name: String) throws(AuditLineError) -> AuditedError? {
            let range = take(name)
            if isNull(range) { return nil }
            guard scanner.bytes[range.lowerBound] == UInt8(ascii: "{") else { throw AuditLineError(description: "\(name) is neither null nor an object") }
            var inner: [(name: String, value: Range<Int>)] = []
            _ = try? scanner.forEachMember(ofObjectAt: range.lowerBound, depth: 1) { memberName, value in
                inner.append((scanner.decodeString(memberName), value))
            }
            guard inner.map(\.name) == ["code", "message"], let code = Int(text(inner[0].value)) else {
                throw AuditLineError(description: "\(name) is not {\"code\":integer,\"message\":string}")
            }
            return AuditedError(code: code, message: try stringValue(inner[1].value, "\(name).message"))
        }

        mutating func requestID(_ name: String) throws(AuditLineError) -> JSONRPCID? {
            let range = take(name)
            if isNull(range) { return nil }
            guard let id = JSONRPCID(token: UnsafeRawBufferPointer(rebasing: scanner.bytes[range])) else {
                throw AuditLineError(description: "\(name) is not null, a string or an integer")
            }
            return id
        }
    }
}

extension UInt8 {
    fileprivate var decimalDigit: UInt8? {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self) ? self - UInt8(ascii: "0") : nil
    }

    fileprivate var lowercaseHexDigit: UInt8? {
        if let digit = decimalDigit { return digit }
        return (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(self) ? self - UInt8(ascii: "a") + 10 : nil
    }
}
