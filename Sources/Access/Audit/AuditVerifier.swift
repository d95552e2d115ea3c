/// Checks the chain of an audit file, line by line without holding the file: every line is an
/// entry as the log writes it, each `hash` is the hash of its line, sequence numbers go up by one
/// from 1, and each `previousHash` is the `hash` of the line before (64 zeros for the first).
/// Reports the first problem, with its line number.
///
/// What a file cannot tell about itself: whether entries were removed from its END. A file cut
/// after entry N is a valid chain of N entries. Catching that needs the last hash kept somewhere
/// else — the Redis stream the entries are also sent to, or a note an operator takes — passed as
/// `expectedLast`: the file must then contain that hash (with that sequence, when given).
///
/// Nor can the chain stop someone who rewrites it from some point on, recomputing every hash
/// after it: the hashes are not keyed. The same kept hash catches that, when it is from after the
/// rewritten point.
public struct AuditVerifier: Sendable {
    /// The first problem found.
    public struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        public enum Kind: String, Sendable, Equatable {
            /// A line's bytes do not hash to its stated hash: something in it was changed.
            case changed
            /// Entries are missing: a sequence gap, or a `previousHash` that is not the line
            /// before's hash, or an expected last hash the file does not contain.
            case removed
            /// Sequence numbers go backwards, or a missing entry turns up later in the file.
            case reordered
            /// Not an entry as the log writes it: not JSON, other members, a line cut short…
            case malformed
        }

        /// From 1.
        public var line: Int
        public var kind: Kind
        public var detail: String

        public init(line: Int, kind: Kind, detail: String) {
            self.line = line
            self.kind = kind
            self.detail = detail
        }

        /// `line 7: changed: …`
        public var description: String { "line \(line): \(kind.rawValue): \(detail)" }
    }

    /// A chain that holds.
    public struct Summary: Sendable, Equatable, CustomStringConvertible {
        public var entries: Int
        /// 0 and 64 zeros for an empty file.
        public var lastSequence: UInt64
        public var lastHash: String

        public init(entries: Int, lastSequence: UInt64, lastHash: String) {
            self.entries = entries
            self.lastSequence = lastSequence
            self.lastHash = lastHash
        }

        /// `ok: 12 entries, last hash …`
        public var description: String { "ok: \(entries) entries, last hash \(lastHash)" }
    }

    /// A hash (and, optionally, its sequence) kept outside the file: the file must contain it.
    public struct ExpectedLast: Sendable, Equatable {
        public var hash: String
        public var sequence: UInt64?

        public init(hash: String, sequence: UInt64? = nil) {
            self.hash = hash
            self.sequence = sequence
        }

        /// `HASH` or `SEQUENCE:HASH`.
        public init?(parsing text: String) {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            let hash = String(parts.last ?? "").lowercased()
            guard parts.count <= 2, hash.utf8.count == 64, hash.allSatisfy(\.isHexDigit) else { return nil }
            if parts.count == 2 {
                guard let sequence = UInt64(parts[0]) else { return nil }
                self.init(hash: hash, sequence: sequence)
            } else {
                self.init(hash: hash)
            }
        }
    }

    public var expectedLast: ExpectedLast?

    public init(expectedLast: ExpectedLast? = nil) {
        self.expectedLast = expectedLast
    }

    /// Checks the file at `path`; throws only when it cannot be read.
    public func verify(path: String) throws(AuditFileError) -> Result<Summary, Problem> {
        let lines = try AuditFileLines(path: path)
        var chain = ChainCheck(expectedLast: expectedLast)
        try lines.forEach { number, line in chain.check(number, line) }
        return chain.finish()
    }

    /// The state of a check, one line at a time.
    private struct ChainCheck {
        let expectedLast: ExpectedLast?
        var lines = 0
        var entries = 0
        var expectedSequence: UInt64 = 1
        var previousHash = AuditEntry.firstPreviousHash
        var problem: Problem?
        /// A sequence gap at `line`: the missing entries are looked for further on before it is
        /// called a removal.
        var gap: (line: Int, missing: Range<UInt64>)?
        var expectedLastFound = false

        init(expectedLast: ExpectedLast?) {
            self.expectedLast = expectedLast
        }

        /// False to stop.
        mutating func check(_ number: Int, _ line: AuditFileLine) -> Bool {
            lines = number
            if let gap {
                if let sequence = AuditLineReading.leadingSequence(of: line.bytes), gap.missing.contains(sequence) {
                    problem = Problem(
                        line: gap.line, kind: .reordered,
                        detail: "entry \(gap.missing.upperBound) comes before entry \(sequence), which is at line \(number)"
                    )
                    return false
                }
                return true
            }
            if let found = firstProblem(at: number, line) {
                problem = found
                return false
            }
            return true  // after a gap too: the missing entries may turn up further on
        }

        private mutating func firstProblem(at number: Int, _ line: AuditFileLine) -> Problem? {
            func found(_ kind: Problem.Kind, _ detail: String) -> Problem { Problem(line: number, kind: kind, detail: detail) }
            guard line.isTerminated else {
                return found(.malformed, "the last line has no newline: a write cut short (the log cuts it off when it next opens the file)")
            }
            guard !line.isOverlong else { return found(.malformed, "the line is \(line.length) bytes long: not an entry") }
            guard let hashes = AuditLineReading.hashes(of: line.bytes) else {
                return found(.malformed, "the line does not end with a \"hash\" member of 64 characters")
            }
            guard hashes.stated == hashes.computed else {
                return found(.changed, "the line's bytes hash to \(hashes.computed), its stated hash is \(hashes.stated)")
            }
            let entry: AuditEntry
            do {
                entry = try AuditLineReading.entry(from: line.bytes)
            } catch {
                return found(.malformed, error.description)
            }
            guard entry.sequence > 0 else { return found(.malformed, "sequence 0: sequences start at 1") }
            if entry.sequence < expectedSequence {
                return found(.reordered, "entry \(entry.sequence) comes after entry \(expectedSequence - 1)")
            }
            if entry.sequence > expectedSequence {
                gap = (number, expectedSequence..<entry.sequence)
                return nil
            }
            guard entry.previousHash == previousHash else {
                if number == 1 {
                    return found(.removed, "the first entry's previousHash is \(entry.previousHash), not 64 zeros: the entries before it are missing")
                }
                return found(
                    .removed,
                    "previousHash is \(entry.previousHash), but line \(number - 1) hashes to \(previousHash): entries between them were removed, or this line comes from another chain"
                )
            }
            if let expectedLast {
                if entry.hash == expectedLast.hash {
                    if let sequence = expectedLast.sequence, sequence != entry.sequence {
                        return found(.changed, "the expected last hash is that of entry \(entry.sequence), not of entry \(sequence)")
                    }
                    expectedLastFound = true
                } else if entry.sequence == expectedLast.sequence {
                    return found(.changed, "entry \(entry.sequence) hashes to \(entry.hash), the expected last hash is \(expectedLast.hash): the chain was rewritten up to here")
                }
            }
            previousHash = entry.hash
            expectedSequence += 1
            entries += 1
            return nil
        }

        func finish() -> Result<Summary, Problem> {
            if let problem { return .failure(problem) }
            if let gap {
                let first = gap.missing.lowerBound
                let last = gap.missing.upperBound - 1
                let what = first == last ? "entry \(first) is missing" : "entries \(first)…\(last) are missing"
                return .failure(Problem(line: gap.line, kind: .removed, detail: what))
            }
            if let expectedLast, !expectedLastFound {
                let detail: String
                if let sequence = expectedLast.sequence, sequence > expectedSequence - 1 {
                    detail = "the file ends at entry \(expectedSequence - 1), the expected last entry is \(sequence) (hash \(expectedLast.hash)): entries at the end were removed"
                } else {
                    detail = "the expected last hash \(expectedLast.hash) is not in the file: entries at its end were removed, or the chain was rewritten"
                }
                return .failure(Problem(line: lines + 1, kind: .removed, detail: detail))
            }
            return .success(Summary(entries: entries, lastSequence: expectedSequence - 1, lastHash: previousHash))
        }
    }
}
