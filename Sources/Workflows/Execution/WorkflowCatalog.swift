import Backend
import JSONRPC
import Synchronization

/// Every version of every workflow definition: `create` validates and stores, `list` and `get`
/// read. A stored version never changes.
public struct WorkflowCatalog: Sendable {
    public let store: any WorkflowStateStore
    let clock: any WorkflowClock
    private let parsed = ParsedDefinitions()

    public init(store: any WorkflowStateStore, clock: any WorkflowClock = SystemWorkflowClock()) {
        self.store = store
        self.clock = clock
    }

    /// Validates `source` (YAML or JSON) and stores it as a new version. Creating a version
    /// that exists with the same text returns it (`created` false); with other text it is
    /// refused (`.versionExists`).
    public func create(source: String, createdBy: String? = nil) async throws(WorkflowError) -> WorkflowCatalogEntry {
        let definition: WorkflowDefinition
        do {
            definition = try WorkflowLoader.load(source)
        } catch {
            throw Self.invalid(error)
        }
        return try await store(definition, createdBy: createdBy)
    }

    /// Validates a definition sent as JSON and stores it (see `create(source:createdBy:)`).
    public func create(document: JSONValue, createdBy: String? = nil) async throws(WorkflowError) -> WorkflowCatalogEntry {
        let source: String
        do {
            source = try WorkflowLoader.text(of: ExpressionEvaluator.plain(document))
        } catch {
            throw Self.invalid(error)
        }
        return try await create(source: source, createdBy: createdBy)
    }

    private static func invalid(_ error: WorkflowDefinitionError) -> WorkflowError {
        let count = error.diagnostics.count
        return WorkflowError(
            .invalidDefinition, "the definition has \(count) problem\(count == 1 ? "" : "s"): \(error.diagnostics.first?.description ?? "")",
            data: ["problems": .array(error.diagnostics.map(\.jsonValue))])
    }

    private func store(_ definition: WorkflowDefinition, createdBy: String?) async throws(WorkflowError) -> WorkflowCatalogEntry {
        let record = StoredWorkflowDefinition(
            name: definition.name, version: definition.version, source: definition.source, createdAt: clock.now(), createdBy: createdBy)
        do {
            if try await store.saveDefinition(record) {
                parsed.keep(definition)
                return WorkflowCatalogEntry(definition: definition, stored: record, created: true)
            }
            guard let existing = try await store.definition(name: definition.name, version: definition.version) else {
                throw WorkflowError(.storageFailed, "version \(definition.version) of \(definition.name) could not be stored")
            }
            guard existing.source == definition.source else {
                throw WorkflowError(
                    .versionExists,
                    "version \(definition.version) of \(definition.name) exists with other content; definitions never change: create a new version",
                    data: ["workflowName": .string(definition.name), "version": .string(definition.version)])
            }
            parsed.keep(definition)
            return WorkflowCatalogEntry(definition: definition, stored: existing, created: false)
        } catch let error as WorkflowError {
            throw error
        } catch {
            throw .storage(error)
        }
    }

    /// One summary per workflow (or only `name`'s), by name.
    public func list(name: String? = nil) async throws(WorkflowError) -> [WorkflowSummary] {
        let records: [StoredWorkflowDefinition]
        do {
            records = try await store.definitions(name: name)
        } catch {
            throw .storage(error)
        }
        let byName = Dictionary(grouping: records, by: \.name)
        return byName.keys.sorted().compactMap { name in
            let versions = byName[name]!.sorted { WorkflowVersionOrder.precedes($0.version, $1.version) }
            guard let latest = versions.last, let definition = try? parsed.definition(parsing: latest) else { return nil }
            return WorkflowSummary(name: name, versions: versions.map(\.version), latest: definition, latestCreatedAt: latest.createdAt)
        }
    }

    /// A version, or the latest (by `WorkflowVersionOrder`) when `version` is nil.
    public func get(name: String, version: String? = nil) async throws(WorkflowError) -> WorkflowCatalogEntry {
        do {
            let versions = try await store.definitions(name: name).sorted { WorkflowVersionOrder.precedes($0.version, $1.version) }
            let wanted = version.map { version in versions.first { $0.version == version } } ?? versions.last
            guard let record = wanted else {
                var data: [String: JSONValue] = ["workflowName": .string(name)]
                if let version { data["version"] = .string(version) }
                let what = version.map { "version \($0) of workflow \"\(name)\"" } ?? "workflow \"\(name)\""
                let known = versions.isEmpty ? "" : " (versions: \(versions.map(\.version).joined(separator: ", ")))"
                throw WorkflowError(.unknownWorkflow, "no \(what)\(known)", data: data)
            }
            let definition = try parsed.definition(parsing: record)
            var entry = WorkflowCatalogEntry(definition: definition, stored: record, created: false)
            entry.versions = versions.map(\.version)
            return entry
        } catch let error as WorkflowError {
            throw error
        } catch let error as WorkflowDefinitionError {
            throw WorkflowError(.storageFailed, "the stored definition of \(name) no longer loads: \(error)")
        } catch {
            throw .storage(error)
        }
    }
}

/// Definitions already parsed, by name and version, so that executing a version does not parse
/// its text again (a large definition takes longer to parse than to run). An entry serves only a
/// record with the same text.
private final class ParsedDefinitions: Sendable {
    private static let capacity = 256
    private let definitions = Mutex<[String: WorkflowDefinition]>([:])

    /// The stored version parsed: from here when its text is the one parsed before.
    func definition(parsing record: StoredWorkflowDefinition) throws(WorkflowDefinitionError) -> WorkflowDefinition {
        if let known = definition(of: record) { return known }
        let definition = try WorkflowLoader.load(record.source)
        keep(definition)
        return definition
    }

    func definition(of record: StoredWorkflowDefinition) -> WorkflowDefinition? {
        guard let definition = definitions.withLock({ $0[Self.key(record.name, record.version)] }), definition.source == record.source else {
            return nil
        }
        return definition
    }

    func keep(_ definition: WorkflowDefinition) {
        definitions.withLock { definitions in
            if definitions.count >= Self.capacity, definitions[Self.key(definition.name, definition.version)] == nil {
                definitions.remove(at: definitions.startIndex)
            }
            definitions[Self.key(definition.name, definition.version)] = definition
        }
    }

    private static func key(_ name: String, _ version: String) -> String {
        name + "\n" + version
    }
}

/// One stored version.
public struct WorkflowCatalogEntry: Sendable {
    public var definition: WorkflowDefinition
    public var createdAt: Timestamp
    public var createdBy: String?
    /// Whether `create` stored it now (false: the same text was stored before).
    public var created: Bool
    /// Every version of the workflow (from `get`), oldest first.
    public var versions: [String]?

    init(definition: WorkflowDefinition, stored: StoredWorkflowDefinition, created: Bool) {
        self.definition = definition
        createdAt = stored.createdAt
        createdBy = stored.createdBy
        self.created = created
    }

    /// `{workflowName, version, description?, definition, source, triggers, stepCount, createdAt, createdBy?, created?, versions?}`.
    public var jsonValue: JSONValue {
        var members: [String: JSONValue] = [
            "workflowName": .string(definition.name), "version": .string(definition.version),
            "definition": definition.document, "source": .string(definition.source),
            "triggers": .array(definition.triggers.map(\.jsonValue)), "stepCount": .integer(Int64(definition.stepCount)),
            "createdAt": .string(createdAt.iso8601),
        ]
        if let description = definition.description { members["description"] = .string(description) }
        if let createdBy { members["createdBy"] = .string(createdBy) }
        if let versions { members["versions"] = .array(versions.map(JSONValue.string)) }
        return .object(members)
    }
}

/// A workflow and its versions.
public struct WorkflowSummary: Sendable {
    public var name: String
    /// Oldest first.
    public var versions: [String]
    public var latest: WorkflowDefinition
    public var latestCreatedAt: Timestamp

    /// `{workflowName, latestVersion, versions, description?, triggers, stepCount}`.
    public var jsonValue: JSONValue {
        var members: [String: JSONValue] = [
            "workflowName": .string(name), "latestVersion": .string(latest.version), "versions": .array(versions.map(JSONValue.string)),
            "triggers": .array(latest.triggers.map(\.jsonValue)), "stepCount": .integer(Int64(latest.stepCount)),
            "updatedAt": .string(latestCreatedAt.iso8601),
        ]
        if let description = latest.description { members["description"] = .string(description) }
        return .object(members)
    }
}
