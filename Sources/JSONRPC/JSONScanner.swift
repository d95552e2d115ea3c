#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A validating JSON scanner over UTF-8 bytes.
///
/// It checks the full RFC 8259 grammar, UTF-8 well-formedness inside strings and a nesting limit,
/// without building a tree: callers get byte ranges of values, so payloads that only pass through
/// the gateway are never decoded or re-encoded. The walk is iterative, so a pathological input
/// (hundreds of thousands of `[`) cannot exhaust the stack.
public struct JSONScanner {
    public let bytes: UnsafeRawBufferPointer
    public let maximumDepth: Int

    public init(bytes: UnsafeRawBufferPointer, maximumDepth: Int = JSONLimits.defaultMaximumDepth) {
        self.bytes = bytes
        self.maximumDepth = maximumDepth
    }

    // MARK: Whitespace

    @inline(__always)
    public func skipWhitespace(from index: Int) -> Int {
        var i = index
        while i < bytes.count {
            switch bytes[i] {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"): i += 1
            default: return i
            }
        }
        return i
    }

    /// Checks that nothing but whitespace follows `index`.
    public func expectEnd(from index: Int) throws(JSONSyntaxError) {
        let end = skipWhitespace(from: index)
        if end != bytes.count {
            throw JSONSyntaxError(.trailingCharacters, at: end)
        }
    }

    // MARK: Values

    /// Validates one JSON value starting at `start` (no leading whitespace) and returns the index
    /// just past it. `depth` is the nesting depth the value sits at (0 for a top-level value).
    public func skipValue(from start: Int, depth baseDepth: Int = 0) throws(JSONSyntaxError) -> Int {
        // Containers are tracked in a bit stack: 1 = object, 0 = array.
        var containers = ContainerStack()
        var i = start
        var depth = baseDepth

        // `expectingValue` is the state right before a value; after a value we look for `,` or a
        // closing bracket of the innermost container.
        scanning: while true {
            // --- a value
            i = skipWhitespace(from: i)
            guard i < bytes.count else { throw JSONSyntaxError(.unexpectedEnd, at: i) }
            switch bytes[i] {
            case UInt8(ascii: "{"):
                depth += 1
                if depth > maximumDepth { throw JSONSyntaxError(.tooDeep(maximumDepth), at: i) }
                containers.push(isObject: true)
                i = skipWhitespace(from: i + 1)
                guard i < bytes.count else { throw JSONSyntaxError(.unexpectedEnd, at: i) }
                if bytes[i] == UInt8(ascii: "}") {
                    depth -= 1
                    containers.pop()
                    i += 1
                } else {
                    i = try skipMemberName(from: i)
                    continue scanning
                }
            case UInt8(ascii: "["):
                depth += 1
                if depth > maximumDepth { throw JSONSyntaxError(.tooDeep(maximumDepth), at: i) }
                containers.push(isObject: false)
                i = skipWhitespace(from: i + 1)
                guard i < bytes.count else { throw JSONSyntaxError(.unexpectedEnd, at: i) }
                if bytes[i] == UInt8(ascii: "]") {
                    depth -= 1
                    containers.pop()
                    i += 1
                } else {
                    continue scanning
                }
            case UInt8(ascii: "\""):
                i = try skipString(from: i).end
            default:
                i = try skipScalar(from: i)
            }

            // --- after a value: close containers or move to the next element
            while true {
                if containers.isEmpty { return i }
                i = skipWhitespace(from: i)
                guard i < bytes.count else { throw JSONSyntaxError(.unexpectedEnd, at: i) }
                let byte = bytes[i]
                if byte == UInt8(ascii: ",") {
                    i += 1
                    if containers.topIsObject {
                        i = try skipMemberName(from: skipWhitespace(from: i))
                    }
                    continue scanning
                }
                if containers.topIsObject ? byte == UInt8(ascii: "}") : byte == UInt8(ascii: "]") {
                    depth -= 1
                    containers.pop()
                    i += 1
                    continue
                }
                throw JSONSyntaxError(.unexpectedCharacter(byte), at: i)
            }
        }
    }

    /// Skips `"name" :` and returns the index of the member's value.
    private func skipMemberName(from index: Int) throws(JSONSyntaxError) -> Int {
        guard index < bytes.count else { throw JSONSyntaxError(.unexpectedEnd, at: index) }
        guard bytes[index] == UInt8(ascii: "\"") else {
            throw JSONSyntaxError(.expectedMemberName, at: index)
        }
        let afterName = try skipString(from: index).end
        let colon = skipWhitespace(from: afterName)
        guard colon < bytes.count else { throw JSONSyntaxError(.unexpectedEnd, at: colon) }
        guard bytes[colon] == UInt8(ascii: ":") else { throw JSONSyntaxError(.expectedColon, at: colon) }
        return colon + 1
    }

    /// Validates a string starting at its opening quote. Returns the index past the closing quote
    /// and whether it contains escapes (a string without escapes can be sliced as it is).
    public func skipString(from start: Int) throws(JSONSyntaxError) -> (end: Int, hasEscapes: Bool) {
        var i = start + 1
        var hasEscapes = false
        while i < bytes.count {
            // Eight bytes at a time up to the first that is not plain (printable ASCII other than
            // `"` and `\`): most of a message's bytes are in strings, and most strings are plain.
            if i &+ 8 <= bytes.count {
                let special = Self.specialBytes(bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                if special == 0 {
                    i &+= 8
                    continue
                }
                i &+= special.trailingZeroBitCount &>> 3
            }
            let byte = bytes[i]
            switch byte {
            case UInt8(ascii: "\""):
                return (i + 1, hasEscapes)
            case UInt8(ascii: "\\"):
                hasEscapes = true
                guard i + 1 < bytes.count else { throw JSONSyntaxError(.unexpectedEnd, at: i + 1) }
                switch bytes[i + 1] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                    UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    i += 2
                case UInt8(ascii: "u"):
                    guard i + 5 < bytes.count else { throw JSONSyntaxError(.unexpectedEnd, at: bytes.count) }
                    for k in 2...5 where !bytes[i + k].isHexDigit {
                        throw JSONSyntaxError(.invalidEscape, at: i)
                    }
                    i += 6
                default:
                    throw JSONSyntaxError(.invalidEscape, at: i)
                }
            case 0x00..<0x20:
                throw JSONSyntaxError(.controlCharacterInString(byte), at: i)
            case 0x20..<0x80:
                i += 1
            default:
                i = try skipUTF8Sequence(from: i)
            }
        }
        throw JSONSyntaxError(.unterminatedString, at: start)
    }

    /// The eight bytes at an offset as loaded, in memory order (the first byte the lowest).
    /// Zero when none of them is `"`, `\`, a control character (below 0x20) or part of a
    /// multi-byte UTF-8 sequence (0x80 and above); else the lowest set bit is the high bit of the
    /// first such byte (bits above it may be set spuriously by the borrow of the SWAR tests).
    @inline(__always)
    static func specialBytes(_ loaded: UInt64) -> UInt64 {
        let word = UInt64(littleEndian: loaded)
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        @inline(__always) func zeroBytes(_ value: UInt64) -> UInt64 { (value &- ones) & ~value & highs }
        let quote = zeroBytes(word ^ (ones &* 0x22))
        let backslash = zeroBytes(word ^ (ones &* 0x5C))
        let control = (word &- ones &* 0x20) & ~word & highs
        return quote | backslash | control | (word & highs)
    }

    // MARK: Values known to be valid

    /// The index past the string whose opening quote is at `start`, in bytes already known to be
    /// valid JSON (nothing is checked but the bounds); `plain` when it has neither escapes nor
    /// non-ASCII bytes. Nil when the bytes end first.
    @usableFromInline
    func skipValidString(from start: Int) -> (end: Int, plain: Bool)? {
        var i = start &+ 1
        var plain = true
        while i < bytes.count {
            if i &+ 8 <= bytes.count {
                let special = Self.specialBytes(bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                if special == 0 {
                    i &+= 8
                    continue
                }
                i &+= special.trailingZeroBitCount &>> 3
            }
            switch bytes[i] {
            case UInt8(ascii: "\""): return (i &+ 1, plain)
            case UInt8(ascii: "\\"):
                plain = false
                i &+= 2
            case 0x80...:
                plain = false
                i &+= 1
            default:
                i &+= 1
            }
        }
        return nil
    }

    /// The index past the value at `start` (no leading whitespace), in bytes already known to be
    /// valid JSON: brackets are counted and strings skipped, nothing is validated. Iterative, so
    /// depth costs no stack. Nil when the bytes end first.
    @usableFromInline
    func skipValidValue(from start: Int) -> Int? {
        var i = start
        var depth = 0
        while i < bytes.count {
            switch bytes[i] {
            case UInt8(ascii: "\""):
                guard let string = skipValidString(from: i) else { return nil }
                i = string.end
                if depth == 0 { return i }
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth &+= 1
                i &+= 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth &-= 1
                i &+= 1
                if depth <= 0 { return depth == 0 ? i : nil }
            default:
                if depth > 0 {
                    i &+= 1
                    continue
                }
                // A scalar at the top: up to the next delimiter.
                while i < bytes.count {
                    switch bytes[i] {
                    case UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), UInt8(ascii: " "), UInt8(ascii: "\t"),
                        UInt8(ascii: "\n"), UInt8(ascii: "\r"):
                        return i
                    default: i &+= 1
                    }
                }
                return i
            }
        }
        return nil
    }

    /// The range of the value of the first member named `name` (as UTF-8) of the object at the
    /// start of the bytes, which are known to be valid JSON. Names are compared as bytes when both
    /// are plain ASCII, else as decoded strings (Swift's string equality).
    @usableFromInline
    func validMember(named name: UnsafeRawBufferPointer, nameIsASCII: Bool) -> Range<Int>? {
        var found: Range<Int>?
        walkValidMembers { memberName, plain, value in
            var decoded: String?
            guard self.memberName(memberName, plain: plain, is: name, nameIsASCII: nameIsASCII, decoded: &decoded) else { return true }
            found = value
            return false
        }
        return found
    }

    /// The value ranges of several members of the object (the first of each name) in one pass,
    /// on a value already known to be valid (as `validMember`).
    func validMembers(named names: [StaticString]) -> [Range<Int>?] {
        var found = [Range<Int>?](repeating: nil, count: names.count)
        var missing = names.count
        walkValidMembers { memberName, plain, value in
            var decoded: String?
            for (index, name) in names.enumerated() where found[index] == nil {
                // withUTF8Buffer: a one-scalar literal may be kept as a scalar, not as bytes.
                let matches = name.withUTF8Buffer { utf8 in
                    self.memberName(memberName, plain: plain, is: UnsafeRawBufferPointer(utf8), nameIsASCII: name.isASCII, decoded: &decoded)
                }
                guard matches else { continue }
                found[index] = value
                missing -= 1
                break
            }
            return missing > 0
        }
        return found
    }

    /// Walks the members of the object at the start of the bytes, which are known to be valid
    /// JSON, while `visit` returns true: each member's name (the range inside its quotes, and
    /// whether it is plain: ASCII without escapes) and its value's range. Bytes that break the
    /// promise of validity end the walk.
    @inline(__always)
    private func walkValidMembers(_ visit: (_ name: Range<Int>, _ plain: Bool, _ value: Range<Int>) -> Bool) {
        var i = skipWhitespace(from: 0)
        guard i < bytes.count, bytes[i] == UInt8(ascii: "{") else { return }
        i = skipWhitespace(from: i &+ 1)
        while i < bytes.count, bytes[i] == UInt8(ascii: "\"") {
            guard let memberName = skipValidString(from: i) else { return }
            let nameRange = (i &+ 1)..<(memberName.end &- 1)
            i = skipWhitespace(from: memberName.end)
            guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { return }
            let valueStart = skipWhitespace(from: i &+ 1)
            guard let valueEnd = skipValidValue(from: valueStart) else { return }
            guard visit(nameRange, memberName.plain, valueStart..<valueEnd) else { return }
            i = skipWhitespace(from: valueEnd)
            guard i < bytes.count, bytes[i] == UInt8(ascii: ",") else { return }
            i = skipWhitespace(from: i &+ 1)
        }
    }

    /// Whether the member name at `range` is `name`: as bytes when both are plain ASCII, else as
    /// decoded strings (decoded once per member, into `decoded`).
    @inline(__always)
    private func memberName(
        _ range: Range<Int>, plain: Bool, is name: UnsafeRawBufferPointer, nameIsASCII: Bool, decoded: inout String?
    ) -> Bool {
        if plain && nameIsASCII {
            return range.count == name.count
                && (name.isEmpty || memcmp(bytes.baseAddress! + range.lowerBound, name.baseAddress!, name.count) == 0)
        }
        if decoded == nil { decoded = decodeString(JSONStringSlice(range: range, hasEscapes: true)) }
        return decoded == String(decoding: name, as: UTF8.self)
    }

    /// Validates one multi-byte UTF-8 sequence (RFC 3629: no overlongs, no surrogates, ≤ U+10FFFF).
    @inline(__always)
    private func skipUTF8Sequence(from i: Int) throws(JSONSyntaxError) -> Int {
        let lead = bytes[i]
        let length: Int
        var lower: UInt8 = 0x80
        var upper: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; lower = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; upper = 0x9F
        case 0xF0: length = 4; lower = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; upper = 0x8F
        default: throw JSONSyntaxError(.invalidUTF8, at: i)
        }
        guard i + length <= bytes.count else { throw JSONSyntaxError(.invalidUTF8, at: i) }
        let second = bytes[i + 1]
        guard second >= lower && second <= upper else { throw JSONSyntaxError(.invalidUTF8, at: i) }
        if length > 2 {
            for k in 2..<length where bytes[i + k] & 0xC0 != 0x80 {
                throw JSONSyntaxError(.invalidUTF8, at: i)
            }
        }
        return i + length
    }

    /// Validates `true`, `false`, `null` or a number.
    private func skipScalar(from start: Int) throws(JSONSyntaxError) -> Int {
        switch bytes[start] {
        case UInt8(ascii: "t"): return try skipLiteral("true", from: start)
        case UInt8(ascii: "f"): return try skipLiteral("false", from: start)
        case UInt8(ascii: "n"): return try skipLiteral("null", from: start)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try skipNumber(from: start).end
        case let byte where byte >= 0x80: throw JSONSyntaxError(.invalidUTF8OrCharacter(byte), at: start)
        case let byte: throw JSONSyntaxError(.unexpectedCharacter(byte), at: start)
        }
    }

    private func skipLiteral(_ literal: StaticString, from start: Int) throws(JSONSyntaxError) -> Int {
        let count = literal.utf8CodeUnitCount
        guard start + count <= bytes.count else { throw JSONSyntaxError(.invalidLiteral, at: start) }
        let base = literal.utf8Start
        for k in 0..<count where bytes[start + k] != base[k] {
            throw JSONSyntaxError(.invalidLiteral, at: start)
        }
        return start + count
    }

    /// Validates a number; `isInteger` is true when it has neither fraction nor exponent.
    public func skipNumber(from start: Int) throws(JSONSyntaxError) -> (end: Int, isInteger: Bool) {
        var i = start
        var isInteger = true
        if bytes[i] == UInt8(ascii: "-") { i += 1 }
        guard i < bytes.count, bytes[i].isDigit else { throw JSONSyntaxError(.invalidNumber, at: start) }
        if bytes[i] == UInt8(ascii: "0") {
            i += 1
        } else {
            while i < bytes.count, bytes[i].isDigit { i += 1 }
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            isInteger = false
            i += 1
            guard i < bytes.count, bytes[i].isDigit else { throw JSONSyntaxError(.invalidNumber, at: start) }
            while i < bytes.count, bytes[i].isDigit { i += 1 }
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            isInteger = false
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard i < bytes.count, bytes[i].isDigit else { throw JSONSyntaxError(.invalidNumber, at: start) }
            while i < bytes.count, bytes[i].isDigit { i += 1 }
        }
        return (i, isInteger)
    }

    // MARK: Objects

    /// Walks the members of the object whose `{` is at `start`, validating every value, and calls
    /// `body` with each member's name range (inside the quotes) and value range. Returns the index
    /// past the closing `}`.
    public func forEachMember(
        ofObjectAt start: Int,
        depth: Int = 0,
        _ body: (_ name: JSONStringSlice, _ value: Range<Int>) throws(JSONSyntaxError) -> Void
    ) throws(JSONSyntaxError) -> Int {
        if depth + 1 > maximumDepth { throw JSONSyntaxError(.tooDeep(maximumDepth), at: start) }
        var i = skipWhitespace(from: start + 1)
        guard i < bytes.count else { throw JSONSyntaxError(.unexpectedEnd, at: i) }
        if bytes[i] == UInt8(ascii: "}") { return i + 1 }
        while true {
            guard i < bytes.count else { throw JSONSyntaxError(.unexpectedEnd, at: i) }
            guard bytes[i] == UInt8(ascii: "\"") else { throw JSONSyntaxError(.expectedMemberName, at: i) }
            let name = try skipString(from: i)
            let nameSlice = JSONStringSlice(range: (i + 1)..<(name.end - 1), hasEscapes: name.hasEscapes)
            i = skipWhitespace(from: name.end)
            guard i < bytes.count else { throw JSONSyntaxError(.unexpectedEnd, at: i) }
            guard bytes[i] == UInt8(ascii: ":") else { throw JSONSyntaxError(.expectedColon, at: i) }
            let valueStart = skipWhitespace(from: i + 1)
            let valueEnd = try skipValue(from: valueStart, depth: depth + 1)
            try body(nameSlice, valueStart..<valueEnd)
            i = skipWhitespace(from: valueEnd)
            guard i < bytes.count else { throw JSONSyntaxError(.unexpectedEnd, at: i) }
            switch bytes[i] {
            case UInt8(ascii: ","): i = skipWhitespace(from: i + 1)
            case UInt8(ascii: "}"): return i + 1
            case let byte: throw JSONSyntaxError(.unexpectedCharacter(byte), at: i)
            }
        }
    }

    /// Walks the elements of the array whose `[` is at `start`, validating each.
    public func forEachElement(
        ofArrayAt start: Int,
        depth: Int = 0,
        _ body: (_ value: Range<Int>) throws(JSONSyntaxError) -> Void
    ) throws(JSONSyntaxError) -> Int {
        if depth + 1 > maximumDepth { throw JSONSyntaxError(.tooDeep(maximumDepth), at: start) }
        var i = skipWhitespace(from: start + 1)
        guard i < bytes.count else { throw JSONSyntaxError(.unexpectedEnd, at: i) }
        if bytes[i] == UInt8(ascii: "]") { return i + 1 }
        while true {
            let valueEnd = try skipValue(from: i, depth: depth + 1)
            try body(i..<valueEnd)
            i = skipWhitespace(from: valueEnd)
            guard i < bytes.count else { throw JSONSyntaxError(.unexpectedEnd, at: i) }
            switch bytes[i] {
            case UInt8(ascii: ","): i = skipWhitespace(from: i + 1)
            case UInt8(ascii: "]"): return i + 1
            case let byte: throw JSONSyntaxError(.unexpectedCharacter(byte), at: i)
            }
        }
    }

    // MARK: Strings

    /// True when the string slice equals `literal` (an ASCII name without escapes).
    @inline(__always)
    public func slice(_ slice: JSONStringSlice, equals literal: StaticString) -> Bool {
        if slice.hasEscapes { return decodeString(slice) == literal.description }
        let count = literal.utf8CodeUnitCount
        guard slice.range.count == count else { return false }
        let base = literal.utf8Start
        var k = 0
        while k < count {
            if bytes[slice.range.lowerBound + k] != base[k] { return false }
            k += 1
        }
        return true
    }

    /// Decodes a validated string's contents (the range inside the quotes).
    public func decodeString(_ slice: JSONStringSlice) -> String {
        let raw = UnsafeRawBufferPointer(rebasing: bytes[slice.range])
        if !slice.hasEscapes {
            return String(decoding: raw, as: UTF8.self)
        }
        var utf8: [UInt8] = []
        utf8.reserveCapacity(raw.count)
        var i = 0
        var pendingHighSurrogate: UInt16?
        func appendScalar(_ value: UInt32) {
            let scalar = Unicode.Scalar(value) ?? "\u{FFFD}"
            utf8.append(contentsOf: String(Character(scalar)).utf8)
        }
        while i < raw.count {
            let byte = raw[i]
            guard byte == UInt8(ascii: "\\") else {
                if let high = pendingHighSurrogate { appendScalar(UInt32(high)); pendingHighSurrogate = nil }
                utf8.append(byte)
                i += 1
                continue
            }
            let escape = raw[i + 1]
            if escape == UInt8(ascii: "u") {
                var code: UInt16 = 0
                for k in 2...5 { code = code << 4 | UInt16(raw[i + k].hexValue) }
                i += 6
                if let high = pendingHighSurrogate {
                    pendingHighSurrogate = nil
                    if (0xDC00...0xDFFF).contains(code) {
                        let value = 0x10000 + ((UInt32(high) - 0xD800) << 10) + (UInt32(code) - 0xDC00)
                        appendScalar(value)
                        continue
                    }
                    appendScalar(0xFFFD)
                }
                if (0xD800...0xDBFF).contains(code) {
                    pendingHighSurrogate = code
                } else {
                    appendScalar(UInt32(code))  // a lone low surrogate becomes U+FFFD
                }
                continue
            }
            if pendingHighSurrogate != nil { appendScalar(0xFFFD); pendingHighSurrogate = nil }
            switch escape {
            case UInt8(ascii: "b"): utf8.append(0x08)
            case UInt8(ascii: "f"): utf8.append(0x0C)
            case UInt8(ascii: "n"): utf8.append(0x0A)
            case UInt8(ascii: "r"): utf8.append(0x0D)
            case UInt8(ascii: "t"): utf8.append(0x09)
            default: utf8.append(escape)  // \" \\ \/
            }
            i += 2
        }
        if pendingHighSurrogate != nil { appendScalar(0xFFFD) }
        return String(decoding: utf8, as: UTF8.self)
    }
}

/// The contents of a JSON string (between its quotes) inside a scanned buffer.
public struct JSONStringSlice: Sendable {
    public var range: Range<Int>
    public var hasEscapes: Bool
}

/// A stack of container kinds as bits; depth is bounded by the scanner's limit, so a small
/// inline store grows only for deep documents.
struct ContainerStack {
    private var words: [UInt64] = []
    private var inline: UInt64 = 0
    private(set) var count = 0

    var isEmpty: Bool { count == 0 }

    mutating func push(isObject: Bool) {
        let bit: UInt64 = isObject ? 1 : 0
        if count < 64 {
            inline = (inline & ~(1 << UInt64(count))) | (bit << UInt64(count))
        } else {
            let index = (count - 64) / 64
            let shift = UInt64((count - 64) % 64)
            if index == words.count { words.append(0) }
            words[index] = (words[index] & ~(1 << shift)) | (bit << shift)
        }
        count += 1
    }

    mutating func pop() { count -= 1 }

    var topIsObject: Bool {
        let position = count - 1
        if position < 64 { return inline >> UInt64(position) & 1 == 1 }
        let index = (position - 64) / 64
        return words[index] >> UInt64((position - 64) % 64) & 1 == 1
    }
}

extension UInt8 {
    @inline(__always) var isDigit: Bool { self >= UInt8(ascii: "0") && self <= UInt8(ascii: "9") }
    @inline(__always) var isHexDigit: Bool {
        isDigit || (self >= UInt8(ascii: "a") && self <= UInt8(ascii: "f"))
            || (self >= UInt8(ascii: "A") && self <= UInt8(ascii: "F"))
    }
    @inline(__always) var hexValue: UInt8 {
        if isDigit { return self - UInt8(ascii: "0") }
        if self >= UInt8(ascii: "a") { return self - UInt8(ascii: "a") + 10 }
        return self - UInt8(ascii: "A") + 10
    }
}
