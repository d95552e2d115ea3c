#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import JSONRPC

/// A filter over an audit file, for `audit/query`: entries of a principal, a tenant, methods
/// matching a glob, an outcome, a time range; a page at a time, newest or oldest first.
///
/// The file is read a line at a time (newest first reads it from its end), and reading stops
/// once a page and one more match are found: memory holds a page, whatever the file's size.
/// Lines that are not entries are skipped; `AuditVerifier` is what judges the file.
public struct AuditQuery: Sendable, Equatable {
    public enum Order: String, Sendable, Equatable {
        case newestFirst = "newest"
        case oldestFirst = "oldest"
    }

    public static let defaultLimit = 100
    public static let maximumLimit = 1000

    public var principal: String?
    public var tenant: String?
    /// A glob: `*` any run of characters, `?` one.
    public var method: String?
    public var outcome: AuditOutcome?
    /// Entries at or after this time.
    public var since: AuditTime?
    /// Entries before this time.
    public var until: AuditTime?
    /// Entries per page, 1…1000.
    public var limit: Int
    /// The sequence of the last entry of the page before: the next page continues after it (in
    /// the query's order).
    public var after: UInt64?
    public var order: Order

    public init(
        principal: String? = nil,
        tenant: String? = nil,
        method: String? = nil,
        outcome: AuditOutcome? = nil,
        since: AuditTime? = nil,
        until: AuditTime? = nil,
        limit: Int = AuditQuery.defaultLimit,
        after: UInt64? = nil,
        order: Order = .newestFirst
    ) {
        self.principal = principal
        self.tenant = tenant
        self.method = method
        self.outcome = outcome
        self.since = since
        self.until = until
        self.limit = min(max(limit, 1), Self.maximumLimit)
        self.after = after
        self.order = order
    }

    /// One page of matching entries.
    public struct Page: Sendable, Equatable {
        public var entries: [AuditEntry]
        /// Set when more entries match: pass it as `cursor` for the next page.
        public var nextCursor: UInt64?

        public init(entries: [AuditEntry], nextCursor: UInt64?) {
            self.entries = entries
            self.nextCursor = nextCursor
        }

        /// `{"entries":[…],"nextCursor":"…"}`, each entry as its line; `nextCursor` (a string, as
        /// every cursor of the protocol) only when more entries match.
        public var jsonValue: JSONValue {
            var members: [String: JSONValue] = ["entries": .array(entries.map { .raw($0.json) })]
            if let nextCursor { members["nextCursor"] = .string(String(nextCursor)) }
            return .object(members)
        }
    }

    /// Whether `entry` passes every filter (the cursor aside).
    public func matches(_ entry: AuditEntry) -> Bool {
        if let principal, entry.principal != principal { return false }
        if let tenant, entry.tenant != tenant { return false }
        if let outcome, entry.outcome != outcome { return false }
        if let since, entry.time < since { return false }
        if let until, entry.time >= until { return false }
        if let method, !AuditGlob(method).matches(entry.method) { return false }
        return true
    }

    /// The page of the file at `path` that this query asks for. A file that does not exist has no
    /// entries.
    public func page(ofFileAt path: String) throws(AuditFileError) -> Page {
        let lines: AuditFileLines
        do {
            lines = try AuditFileLines(path: path)
        } catch {
            if access(path, F_OK) != 0 { return Page(entries: [], nextCursor: nil) }
            throw error
        }
        let glob = method.map(AuditGlob.init)
        var query = self
        query.method = nil  // matched with the glob built once
        var entries: [AuditEntry] = []
        var more = false
        let consider = { (line: AuditFileLine) -> Bool in
            guard line.isTerminated, !line.isOverlong, let entry = try? AuditLineReading.entry(from: line.bytes) else { return true }
            if let after = self.after {
                switch self.order {
                case .newestFirst where entry.sequence >= after: return true
                case .oldestFirst where entry.sequence <= after: return true
                default: break
                }
            }
            guard query.matches(entry), glob?.matches(entry.method) ?? true else { return true }
            if entries.count == self.limit {
                more = true
                return false
            }
            entries.append(entry)
            return true
        }
        switch order {
        case .newestFirst: try lines.forEachBackward(consider)
        case .oldestFirst: try lines.forEach { _, line in consider(line) }
        }
        return Page(entries: entries, nextCursor: more ? entries.last?.sequence : nil)
    }
}
