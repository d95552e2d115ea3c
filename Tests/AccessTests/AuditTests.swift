import Access
import Foundation
import JSONRPC
import Synchronization
import Testing

/// The audit log's file: written as a hash chain, checked by the verifier, read by queries.
@Suite struct AuditTests {
    // MARK: The format

    @Test func anEntryIsOneLineOfFixedMembersHashedWithoutItsHash() {
        let first = AuditEntry(sequence: 1, time: AuditTime(millisecondsSince1970: 1_772_442_845_123), event: refusal, previousHash: AuditEntry.firstPreviousHash)
        // The hashes were computed independently (Python's json.dumps and hashlib), from the
        // format protocol-spec 12.9 documents.
        #expect(first.json.description == """
            {"sequence":1,"time":"2026-03-02T09:14:05.123Z","principal":"alice","tenant":"acme","proof":"apiKey","method":"tools/call",\
            "target":"trading__buy","outcome":"refused","error":{"code":-32005,"message":"Forbidden: alice may not tools/call trading__buy: \
            role client has no rule allowing it"},"requestId":7,"connection":12,"replica":null,\
            "previousHash":"0000000000000000000000000000000000000000000000000000000000000000",\
            "hash":"0679be7a448a6502ca18e4d5994922510750ca10b1f979935a32404a4271e74e"}
            """)
        let second = AuditEntry(
            sequence: 2, time: AuditTime(millisecondsSince1970: 1_772_442_845_124),
            event: AuditEvent(
                principal: "bob \"the builder\" ü", tenant: "default", proof: "jwt", method: "x\ty\u{1}\\z", outcome: .ok,
                requestID: .string("req-1"), replica: "r1"
            ),
            previousHash: first.hash
        )
        #expect(second.hash == "0db0ff2b55ae0f3e0a275bcf41206b5cfa3b3a3668813336414f63c09ba1c005")
        #expect(second.json.description.contains(#""principal":"bob \"the builder\" ü","tenant":"default","proof":"jwt","method":"x\ty\u0001\\z","target":null"#))
    }

    @Test func timesAreUTCWithMilliseconds() {
        #expect(AuditTime(millisecondsSince1970: 0).description == "1970-01-01T00:00:00.000Z")
        #expect(AuditTime(millisecondsSince1970: 951_782_400_007).description == "2000-02-29T00:00:00.007Z")
        #expect(AuditTime(canonical: "2026-03-02T09:14:05.123Z")?.millisecondsSince1970 == 1_772_442_845_123)
        #expect(AuditTime(canonical: "2026-03-02T09:14:05Z") == nil)
        #expect(AuditTime(canonical: "2026-02-30T09:14:05.123Z") == nil)
        #expect(AuditTime(iso8601: "2026-03-02T10:14:05.1234+01:00")?.millisecondsSince1970 == 1_772_442_845_123)
        #expect(AuditTime(iso8601: "2026-03-02")?.description == "2026-03-02T00:00:00.000Z")
        #expect(AuditTime(iso8601: "yesterday") == nil)
    }

    // MARK: Writing and verifying

    @Test func writtenEntriesVerifyAndTheFileIsPrivate() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("audit.jsonl")
        let log = try AuditLog(configuration: .init(path: path), clock: steppingClock())
        for number in 1...5 { log.record(event(number)) }
        await log.flush()
        let statistics = log.statistics
        #expect(statistics.written == 5 && statistics.lastSequence == 5)
        log.close()
        await log.flush()

        let summary = try AuditVerifier().verify(path: path).get()
        #expect(summary == AuditVerifier.Summary(entries: 5, lastSequence: 5, lastHash: statistics.lastHash))
        #expect(summary.description == "ok: 5 entries, last hash \(statistics.lastHash)")
        let mode = (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue
        #expect(mode == 0o600)
    }

    @Test func theExtraSinkGetsEveryEntryInOrderAfterTheFile() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("audit.jsonl")
        let seen = Mutex<[UInt64]>([])
        let log = try AuditLog(configuration: .init(path: path), sink: { entry in seen.withLock { $0.append(entry.sequence) } })
        for number in 1...100 { log.record(event(number)) }
        await log.flush()
        #expect(seen.withLock { $0 } == Array(1...100))
        log.close()
    }

    @Test func aChangedLetterInAPrincipalIsAChangeAtItsLine() throws {
        let file = try WrittenFile(entries: 5)
        try file.editLine(3) { $0.replacingOccurrences(of: "\"principal\":\"user-3\"", with: "\"principal\":\"user-8\"") }
        let problem = try #require(file.verify().problem)
        #expect(problem.line == 3 && problem.kind == .changed)
    }

    @Test func aChangedDigitInATimeIsAChangeAtItsLine() throws {
        let file = try WrittenFile(entries: 5)
        try file.editLine(2) { $0.replacingOccurrences(of: "09:14:05.", with: "09:14:06.") }
        let problem = try #require(file.verify().problem)
        #expect(problem.line == 2 && problem.kind == .changed)
        #expect(problem.description.hasPrefix("line 2: changed: "))
    }

    @Test func aChangedHashIsAChange() throws {
        let file = try WrittenFile(entries: 3)
        try file.editLine(3) { line in
            var bytes = Array(line.utf8)
            bytes[bytes.count - 3] = bytes[bytes.count - 3] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
            return String(decoding: bytes, as: UTF8.self)
        }
        #expect(try file.verify().problem?.kind == .changed)
    }

    @Test func aDeletedMiddleLineIsARemovalAtTheLineAfterIt() throws {
        let file = try WrittenFile(entries: 5)
        try file.editLines { $0.remove(at: 2) }  // entry 3
        let problem = try #require(file.verify().problem)
        #expect(problem.line == 3 && problem.kind == .removed)
        #expect(problem.detail == "entry 3 is missing")
    }

    @Test func swappedLinesAreAReorderingAtTheFirstOfThem() throws {
        let adjacent = try WrittenFile(entries: 5)
        try adjacent.editLines { $0.swapAt(1, 2) }  // lines 2 and 3
        let problem = try #require(adjacent.verify().problem)
        #expect(problem.line == 2 && problem.kind == .reordered)

        let apart = try WrittenFile(entries: 6)
        try apart.editLines { $0.swapAt(1, 4) }  // lines 2 and 5
        let later = try #require(apart.verify().problem)
        #expect(later.line == 2 && later.kind == .reordered)
        #expect(later.detail == "entry 5 comes before entry 3, which is at line 3")
    }

    @Test func aLineMovedBackIsAReordering() throws {
        let file = try WrittenFile(entries: 5)
        try file.editLines { lines in lines.append(lines.remove(at: 1)) }  // entry 2 moved to the end
        let problem = try #require(file.verify().problem)
        #expect(problem.line == 2 && problem.kind == .reordered)
    }

    @Test func removingTheFirstEntriesIsARemoval() throws {
        let file = try WrittenFile(entries: 4)
        try file.editLines { $0.removeFirst(2) }
        let problem = try #require(file.verify().problem)
        #expect(problem.line == 1 && problem.kind == .removed)
    }

    @Test func linesTheLogDidNotWriteAreMalformed() throws {
        let file = try WrittenFile(entries: 3)
        try file.editLine(2) { _ in "hello" }
        #expect(try file.verify().problem == AuditVerifier.Problem(line: 2, kind: .malformed, detail: "the line does not end with a \"hash\" member of 64 characters"))

        // A well-formed chain whose line is written with a space: the bytes are not the log's.
        let respaced = try WrittenFile(entries: 1)
        let entry = AuditEntry(
            sequence: 1, time: AuditTime(millisecondsSince1970: 0), event: event(1), previousHash: AuditEntry.firstPreviousHash)
        var line = entry.json.description.replacingOccurrences(of: "\"sequence\":1", with: "\"sequence\": 1")
        line = String(line.dropLast(75)) + "}"
        let hash = sha256Hex(line)
        try respaced.write(lines: [String(line.dropLast()) + ",\"hash\":\"\(hash)\"}"])
        #expect(try respaced.verify().problem?.kind == .malformed)
    }

    @Test func removingTheLastEntriesNeedsTheHashKeptElsewhere() throws {
        let file = try WrittenFile(entries: 5)
        let whole = try file.verify().get()
        try file.editLines { $0.removeLast(2) }
        #expect(try file.verify().get().entries == 3, "a file cut at its end is a valid chain")

        let expected = try #require(AuditVerifier.ExpectedLast(parsing: whole.lastHash))
        let problem = try #require(try AuditVerifier(expectedLast: expected).verify(path: file.path).problem)
        #expect(problem.line == 4 && problem.kind == .removed)
        let withSequence = try #require(AuditVerifier.ExpectedLast(parsing: "5:\(whole.lastHash)"))
        #expect(try AuditVerifier(expectedLast: withSequence).verify(path: file.path).problem?.kind == .removed)
        #expect(AuditVerifier.ExpectedLast(parsing: "not-a-hash") == nil)
    }

    @Test func anExpectedHashFoundInAGrownFileIsFine() throws {
        let file = try WrittenFile(entries: 5)
        let lines = try file.lines()
        let third = try #require(lines[2].split(separator: "\"hash\":\"").last.map { String($0.prefix(64)) })
        let summary = try AuditVerifier(expectedLast: .init(hash: third, sequence: 3)).verify(path: file.path).get()
        #expect(summary.entries == 5)
    }

    // MARK: Continuing a file

    @Test func theChainContinuesAcrossAReopen() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("audit.jsonl")
        let first = try AuditLog(configuration: .init(path: path), clock: steppingClock())
        for number in 1...3 { first.record(event(number)) }
        first.close()
        await first.flush()

        let second = try AuditLog(configuration: .init(path: path), clock: steppingClock())
        #expect(second.statistics.lastSequence == 3)
        for number in 4...5 { second.record(event(number)) }
        second.close()
        await second.flush()
        #expect(try AuditVerifier().verify(path: path).get().entries == 5)
    }

    @Test func aTornLastLineIsCutOffWhenTheFileIsReopened() async throws {
        let file = try WrittenFile(entries: 3)
        let handle = try #require(FileHandle(forWritingAtPath: file.path))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(#"{"sequence":4,"time":"2026-03-"#.utf8))
        try handle.close()
        #expect(try file.verify().problem?.line == 4)
        #expect(try file.verify().problem?.kind == .malformed)

        let log = try AuditLog(configuration: .init(path: file.path), clock: steppingClock())
        #expect(log.statistics.lastSequence == 3)
        log.record(event(4))
        log.close()
        await log.flush()
        #expect(try file.verify().get().entries == 4)
        #expect(try file.lines().count == 4)
    }

    @Test func aLastLineThatIsNoEntryStopsTheOpen() throws {
        let file = try WrittenFile(entries: 2)
        try file.editLine(2) { _ in "not an entry" }
        #expect(throws: AuditFileError.self) { try AuditLog(configuration: .init(path: file.path)) }
    }

    // MARK: Bounds

    @Test func aFullQueueDropsAndCountsAndDoesNotGrow() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("audit.jsonl")
        let (entered, enteredContinuation) = AsyncStream.makeStream(of: Void.self)
        let release = DispatchSemaphore(value: 0)
        let isFirst = Mutex(true)
        let log = try AuditLog(
            configuration: .init(path: path, queueCapacity: 4),
            sink: { _ in
                // The writer stops in the sink after its first entry, with the queue behind it.
                guard isFirst.withLock({ first in defer { first = false }; return first }) else { return }
                enteredContinuation.yield()
                release.wait()
            }
        )
        log.record(event(1))
        for await _ in entered { break }
        for number in 2...15 { log.record(event(number)) }
        let blocked = log.statistics
        #expect(blocked.queued == 4)
        #expect(blocked.dropped == 10)
        release.signal()
        await log.flush()
        let after = log.statistics
        #expect(after.written == 5 && after.queued == 0 && after.dropped == 10)
        log.close()
        await log.flush()
        #expect(try AuditVerifier().verify(path: path).get().entries == 5)
    }

    @Test func eventsRecordedFromManyTasksAtOnceFormOneChain() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("audit.jsonl")
        let log = try AuditLog(configuration: .init(path: path))
        await withTaskGroup(of: Void.self) { group in
            for task in 0..<8 {
                group.addTask {
                    for number in 1...250 { log.record(event(task * 250 + number)) }
                }
            }
        }
        await log.flush()
        #expect(log.statistics.written == 2000 && log.statistics.dropped == 0)
        log.close()
        await log.flush()
        #expect(try AuditVerifier().verify(path: path).get().entries == 2000)
    }

    @Test func aHugeLineIsMalformedWithoutBeingHeld() throws {
        let file = try WrittenFile(entries: 3)
        try file.editLine(2) { _ in String(repeating: "x", count: 3 << 20) }
        let problem = try #require(file.verify().problem)
        #expect(problem == AuditVerifier.Problem(line: 2, kind: .malformed, detail: "the line is 3145728 bytes long: not an entry"))
        #expect(try AuditQuery(order: .oldestFirst).page(ofFileAt: file.path).entries.map(\.sequence) == [1, 3])
        #expect(try AuditQuery().page(ofFileAt: file.path).entries.map(\.sequence) == [3, 1])
    }

    @Test func theQueueIsBoundedInBytesToo() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("audit.jsonl")
        let (entered, enteredContinuation) = AsyncStream.makeStream(of: Void.self)
        let release = DispatchSemaphore(value: 0)
        let isFirst = Mutex(true)
        let log = try AuditLog(
            configuration: .init(path: path, queueByteLimit: 3000),
            sink: { _ in
                guard isFirst.withLock({ first in defer { first = false }; return first }) else { return }
                enteredContinuation.yield()
                release.wait()
            }
        )
        log.record(event(1))
        for await _ in entered { break }
        var long = event(2)
        long.target = String(repeating: "t", count: 5000)  // cut to 1024 bytes
        for _ in 1...5 { log.record(long) }
        #expect(log.statistics.queued == 2 && log.statistics.dropped == 3)
        release.signal()
        log.close()
        await log.flush()
        #expect(log.statistics.written == 3)
    }

    @Test func eventsAfterCloseAreDropped() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let log = try AuditLog(configuration: .init(path: directory.file("audit.jsonl")))
        log.record(event(1))
        log.close()
        log.record(event(2))
        await log.flush()
        #expect(log.statistics.written == 1 && log.statistics.dropped == 1)
    }

    @Test func longStringsAreCutSoThatAnEntryStaysSmall() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("audit.jsonl")
        let log = try AuditLog(configuration: .init(path: path))
        var huge = event(1)
        huge.method = String(repeating: "m", count: 100_000)
        huge.target = String(repeating: "é", count: 100_000)
        huge.requestID = .string(String(repeating: "i", count: 100_000))
        log.record(huge)
        log.close()
        await log.flush()
        let line = try #require(try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").first)
        #expect(line.utf8.count < 4 * AuditLog.maximumFieldLength)
        #expect(line.contains("mmm…\""))
        #expect(try AuditVerifier().verify(path: path).get().entries == 1)
    }

    // MARK: Queries

    @Test func queriesFilterByPrincipalTenantMethodOutcomeAndTime() throws {
        let file = try WrittenFile(entries: 12)  // user-1…user-3 in turn, tenants a/b, methods alternate
        func sequences(_ query: AuditQuery) throws -> [UInt64] { try query.page(ofFileAt: file.path).entries.map(\.sequence) }

        #expect(try sequences(AuditQuery(principal: "user-2")) == [11, 8, 5, 2])
        #expect(try sequences(AuditQuery(tenant: "b", order: .oldestFirst)) == [2, 4, 6, 8, 10, 12])
        #expect(try sequences(AuditQuery(method: "tools/*", order: .oldestFirst)) == [1, 3, 5, 7, 9, 11])
        #expect(try sequences(AuditQuery(method: "agents/reg?ster", outcome: .refused)) == [12, 6])
        let since = try #require(AuditTime(iso8601: "2026-03-02T09:14:05.103Z"))
        let until = try #require(AuditTime(iso8601: "2026-03-02T09:14:05.106Z"))
        #expect(try sequences(AuditQuery(since: since, until: until, order: .oldestFirst)) == [3, 4, 5])
    }

    @Test func queriesPageWithACursorInEitherOrder() throws {
        let file = try WrittenFile(entries: 7)
        let first = try AuditQuery(limit: 3).page(ofFileAt: file.path)
        #expect(first.entries.map(\.sequence) == [7, 6, 5] && first.nextCursor == 5)
        let second = try AuditQuery(limit: 3, after: 5).page(ofFileAt: file.path)
        #expect(second.entries.map(\.sequence) == [4, 3, 2] && second.nextCursor == 2)
        let last = try AuditQuery(limit: 3, after: 2).page(ofFileAt: file.path)
        #expect(last.entries.map(\.sequence) == [1] && last.nextCursor == nil)

        let oldest = try AuditQuery(limit: 4, order: .oldestFirst).page(ofFileAt: file.path)
        #expect(oldest.entries.map(\.sequence) == [1, 2, 3, 4] && oldest.nextCursor == 4)
        let rest = try AuditQuery(limit: 4, after: 4, order: .oldestFirst).page(ofFileAt: file.path)
        #expect(rest.entries.map(\.sequence) == [5, 6, 7] && rest.nextCursor == nil)
        #expect(AuditQuery(limit: 5000).limit == 1000)
    }

    @Test func queryParamsAreReadAndCheckedAsTheMethodTakesThem() throws {
        let query = try AuditQuery(params: [
            "principal": "alice", "method": "tools/*", "outcome": "refused", "since": "2026-03-02T09:00:00Z",
            "limit": 10, "cursor": "42", "order": "oldest",
        ])
        #expect(query == AuditQuery(
            principal: "alice", method: "tools/*", outcome: .refused, since: AuditTime(iso8601: "2026-03-02T09:00:00Z"),
            limit: 10, after: 42, order: .oldestFirst))
        #expect(try AuditQuery(params: nil) == AuditQuery())
        for bad: JSONValue in [["limit": 0], ["limit": 1001], ["outcome": "maybe"], ["since": "soon"], ["cursor": "x"], ["principal": 3], "x"] {
            #expect(throws: JSONRPCError.self) { try AuditQuery(params: bad) }
        }
        let page = AuditQuery.Page(entries: [], nextCursor: 9).jsonValue
        #expect(page.encoded == #"{"entries":[],"nextCursor":"9"}"#)
    }

    @Test func aQueryReadsALargeFileFromTheEndWithoutReadingItAll() throws {
        // Lines cross the reader's chunks in every way; the newest page comes from the end.
        let file = try WrittenFile(entries: 2000)
        let page = try AuditQuery(limit: 1000).page(ofFileAt: file.path)
        #expect(page.entries.first?.sequence == 2000 && page.entries.last?.sequence == 1001 && page.nextCursor == 1001)
        let all = try AuditQuery(limit: 1000, after: 1001).page(ofFileAt: file.path)
        #expect(all.entries.map(\.sequence) == Array((1...1000).reversed()))
        #expect(try file.verify().get().entries == 2000)
    }
}

// MARK: Helpers

private let refusal = AuditEvent(
    principal: "alice", tenant: "acme", proof: Principal.Proof.apiKey.rawValue, method: "tools/call", target: "trading__buy",
    outcome: .refused,
    error: AuditedError(AccessError.forbidden(principal: "alice", what: "tools/call trading__buy", reason: "role client has no rule allowing it").jsonRPCError),
    requestID: .integer(7), connection: 12
)

/// Event `number`: principals user-1…user-3 in turn, tenants a and b, `tools/call` (ok) and
/// `agents/register` (refused every third) alternating.
private func event(_ number: Int) -> AuditEvent {
    AuditEvent(
        principal: "user-\((number - 1) % 3 + 1)", tenant: number % 2 == 1 ? "a" : "b", proof: "apiKey",
        method: number % 2 == 1 ? "tools/call" : "agents/register", target: "t\(number)",
        outcome: number % 2 == 1 ? .ok : (number % 3 == 0 ? .refused : .failed),
        error: number % 2 == 1 ? nil : AuditedError(code: -32005, message: "no"),
        requestID: .integer(Int64(number)), connection: 1, replica: nil
    )
}

/// 2026-03-02T09:14:05.101Z, then a millisecond later at each call.
private func steppingClock() -> @Sendable () -> AuditTime {
    let next = Mutex<Int64>(1_772_442_845_101)
    return { AuditTime(millisecondsSince1970: next.withLock { time in defer { time += 1 }; return time }) }
}

private func sha256Hex(_ text: String) -> String {
    // Through the log's own entry type would prove nothing: shell out to the system's sha256sum.
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["sha256sum"]
    let input = Pipe()
    let output = Pipe()
    process.standardInput = input
    process.standardOutput = output
    try! process.run()
    input.fileHandleForWriting.write(Data(text.utf8))
    try! input.fileHandleForWriting.close()
    process.waitUntilExit()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    return String(decoding: data.prefix(64), as: UTF8.self)
}

/// Removed by `remove()`, in a `defer` so that it outlives every use of its files.
private struct TemporaryDirectory {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "audit-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// A file of `entries` entries written by the log, for tests that then change it.
private final class WrittenFile {
    let directory: TemporaryDirectory
    let path: String

    init(entries: Int) throws {
        directory = try TemporaryDirectory()
        path = directory.file("audit.jsonl")
        let clock = steppingClock()
        // Written synchronously through the entry type: the same bytes the log appends.
        var previous = AuditEntry.firstPreviousHash
        var text = ""
        for number in 1...entries {
            let entry = AuditEntry(sequence: UInt64(number), time: clock(), event: event(number), previousHash: previous)
            previous = entry.hash
            text += entry.json.description + "\n"
        }
        try text.write(toFile: path, atomically: false, encoding: .utf8)
    }

    deinit { directory.remove() }

    func lines() throws -> [String] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
    }

    func write(lines: [String]) throws {
        try (lines.map { $0 + "\n" }.joined()).write(toFile: path, atomically: false, encoding: .utf8)
    }

    func editLines(_ edit: (inout [String]) -> Void) throws {
        var lines = try lines()
        edit(&lines)
        try write(lines: lines)
    }

    func editLine(_ number: Int, _ edit: (String) -> String) throws {
        try editLines { lines in
            let edited = edit(lines[number - 1])
            precondition(edited != lines[number - 1], "the edit changes nothing")
            lines[number - 1] = edited
        }
    }

    func verify() throws -> Result<AuditVerifier.Summary, AuditVerifier.Problem> {
        try AuditVerifier().verify(path: path)
    }
}

extension Result {
    fileprivate var problem: Failure? {
        if case .failure(let failure) = self { return failure }
        return nil
    }
}
