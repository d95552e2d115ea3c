import Backend
import JSONRPC
import NIOCore

/// `WorkflowStateStore` over any `KeyValueStore` (in-memory or Redis), in one namespace:
///
/// - `def/<name>/<version>`: a definition
/// - `exec/<executionId>`: an execution's header
/// - `step/<executionId>/<stepId>`: one step's record
/// - `active/<executionId>`: present while the execution is unfinished
///
/// Values are JSON. Nothing expires: finished executions stay until removed by an operator.
public struct KeyValueWorkflowStateStore: WorkflowStateStore {
    public let store: any KeyValueStore
    public let namespace: String

    public init(store: any KeyValueStore, namespace: String = "workflows") {
        self.store = store
        self.namespace = namespace
    }

    public func saveDefinition(_ definition: StoredWorkflowDefinition) async throws -> Bool {
        var members: [String: JSONValue] = [
            "name": .string(definition.name), "version": .string(definition.version), "source": .string(definition.source),
            "createdAt": .integer(definition.createdAt.millisecondsSinceEpoch),
        ]
        if let by = definition.createdBy { members["createdBy"] = .string(by) }
        let outcome = try await store.compareAndSet(
            "def/\(definition.name)/\(definition.version)", expectedVersion: 0, to: Self.encode(.object(members)), ttl: nil, namespace: namespace)
        if case .stored = outcome { return true }
        return false
    }

    public func definition(name: String, version: String) async throws -> StoredWorkflowDefinition? {
        guard let entry = try await store.get("def/\(name)/\(version)", namespace: namespace) else { return nil }
        return Self.decodeDefinition(entry.value)
    }

    public func definitions(name: String?) async throws -> [StoredWorkflowDefinition] {
        var found: [StoredWorkflowDefinition] = []
        for key in try await keys(prefix: name.map { "def/\($0)/" } ?? "def/") {
            if let entry = try await store.get(key, namespace: namespace), let definition = Self.decodeDefinition(entry.value) {
                found.append(definition)
            }
        }
        return found
    }

    public func saveExecution(_ execution: WorkflowExecution) async throws {
        if execution.status == .pending {
            // Its place in the listing by start, written once, as it is accepted.
            _ = try await store.set(WorkflowExecutionListing.key(of: execution), to: ByteBuffer(string: "1"), ttl: nil, namespace: namespace)
        }
        _ = try await store.set("exec/\(execution.executionID)", to: Self.encode(execution.storageJSON), ttl: nil, namespace: namespace)
        if execution.status.isFinal {
            _ = try await store.delete("active/\(execution.executionID)", namespace: namespace)
        } else {
            _ = try await store.set("active/\(execution.executionID)", to: ByteBuffer(string: "1"), ttl: nil, namespace: namespace)
        }
    }

    public func saveStep(_ step: WorkflowStepState, executionID: String) async throws {
        _ = try await store.set("step/\(executionID)/\(step.stepID)", to: Self.encode(step.storageJSON), ttl: nil, namespace: namespace)
    }

    public func execution(_ executionID: String) async throws -> WorkflowExecution? {
        guard let header = try await store.get("exec/\(executionID)", namespace: namespace),
            let headerValue = Self.decode(header.value)
        else { return nil }
        var steps: [String: WorkflowStepState] = [:]
        for key in try await keys(prefix: "step/\(executionID)/") {
            if let entry = try await store.get(key, namespace: namespace), let value = Self.decode(entry.value),
                let step = WorkflowStepState(storage: value)
            {
                steps[step.stepID] = step
            }
        }
        return WorkflowExecution(storage: headerValue, steps: steps)
    }

    public func unfinishedExecutionIDs() async throws -> [String] {
        try await keys(prefix: "active/").map { String($0.dropFirst("active/".count)) }
    }

    public func executionIDs(after cursor: String?, limit: Int) async throws -> [(id: String, cursor: String)] {
        let page = try await store.list(namespace: namespace, prefix: "started/", after: cursor, limit: limit)
        return page.entries.compactMap { entry in entry.key.split(separator: "/").last.map { (String($0), entry.key) } }
    }

    private func keys(prefix: String) async throws -> [String] {
        var keys: [String] = []
        var cursor: String?
        repeat {
            let page = try await store.list(namespace: namespace, prefix: prefix, after: cursor, limit: 500)
            keys += page.entries.map(\.key)
            cursor = page.nextCursor
        } while cursor != nil
        return keys
    }

    private static func encode(_ value: JSONValue) -> ByteBuffer {
        var buffer = ByteBuffer()
        value.write(to: &buffer)
        return buffer
    }

    private static func decode(_ buffer: ByteBuffer) -> JSONValue? {
        (try? RawJSON(validating: buffer))?.decoded()
    }

    private static func decodeDefinition(_ buffer: ByteBuffer) -> StoredWorkflowDefinition? {
        guard let members = decode(buffer)?.objectValue, let name = members["name"]?.stringValue,
            let version = members["version"]?.stringValue, let source = members["source"]?.stringValue
        else { return nil }
        return StoredWorkflowDefinition(
            name: name, version: version, source: source,
            createdAt: Timestamp(millisecondsSinceEpoch: members["createdAt"]?.integerValue ?? 0), createdBy: members["createdBy"]?.stringValue)
    }
}
