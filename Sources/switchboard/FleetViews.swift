import Foundation
import JSONRPC

/// `switchboard fleet …` and `switchboard reload`: the fleet methods' results (protocol-spec 16;
/// 16.9 to 16.11 for the fleet's own, 16.8 for `agents/resize`).
enum FleetViews {
    /// `fleet/status`: capacity against what is granted, cost, enforcement; then the templates and the grants.
    static func status(_ fleet: JSONValue) -> String {
        var lines = DetailList()
        lines.add("cpu", "\(number(fleet.at("allocated.cpu"))) of \(number(fleet.at("capacity.cpu"))) cores allocated")
        lines.add("memory", "\(memory(fleet.at("allocated.memoryBytes"))) of \(memory(fleet.at("capacity.memoryBytes"))) allocated")
        let pool = fleet.at("capacity.gpus")?.arrayValue ?? []
        lines.add("gpus", pool.isEmpty ? "none (no GPU pool: fleet.gpus)" : "\(fleet.text("allocated.gpus")) of \(pool.count) allocated (pool \(fleet.list("capacity.gpus") ?? ""))")
        lines.add("cost", "\(money(fleet.at("costPerHour"))) per hour" + prices(fleet.at("prices")))
        for (key, value) in (fleet.at("enforcement")?.objectValue ?? [:]).sorted(by: { $0.key < $1.key }) {
            let label = switch key {
            case "limits": "limits held by"
            case "sandbox": "sandboxes built by"
            default: key
            }
            lines.add(label, value.displayText)
        }
        return [lines.text, templates(fleet.at("templates")?.arrayValue ?? []), grants(fleet.at("grants")?.arrayValue ?? [])].joined(separator: "\n\n")
    }

    /// `fleet/decisions`: one row per decision, its reason (and a refusal's cause) indented below.
    static func decisions(_ result: JSONValue) -> String {
        let decisions = result.at("decisions")?.arrayValue ?? []
        guard !decisions.isEmpty else { return "no decisions" }
        var table = TextTable("TIME", "TEMPLATE", "KIND", "CHANGE", "OUTCOME")
        var notes: [[String]] = []
        for decision in decisions {
            let outcome = decision.text("outcome")
            let refusal = outcome.hasPrefix("refused: ") ? outcome : nil
            table.append([
                decision.text("at"), decision.text("template"), decision.text("kind"), "\(decision.text("from")) → \(decision.text("to"))",
                refusal == nil ? outcome : "refused",
            ])
            notes.append([decision.at("reason")?.displayText, refusal].compactMap { $0 })
        }
        return interleave(table, notes)
    }

    /// `fleet/allocations`: the `resource_allocations` rows.
    static func allocations(_ result: JSONValue) -> String {
        let rows = result.at("allocations")?.arrayValue ?? []
        guard !rows.isEmpty else { return "no allocations" }
        let now = Date()
        var table = TextTable("ID", "AGENT", "TEMPLATE", "RESOURCE", "AMOUNT", "COST/H", "USE", "AGE", "RELEASED")
        for row in rows {
            table.append([
                row.text("id"), row.text("agentId"), row.text("template"), row.text("resourceType"), amount(row), money(row.at("costPerHour")),
                row.at("utilizationPercentage")?.doubleValue.map { "\($0.text(decimals: 1))%" } ?? "-",
                TimeText.age(since: row.at("allocatedAt")?.stringValue, now: now),
                row.at("releasedAt").map { "\(TimeText.age(since: $0.stringValue, now: now)) ago" } ?? "-",
            ])
        }
        return table.text
    }

    /// `fleet/rollouts`: each rollout's summary, its steps indented below; newest first, as the gateway lists them.
    static func rollouts(_ result: JSONValue) -> String {
        let rollouts = result.at("rollouts")?.arrayValue ?? []
        guard !rollouts.isEmpty else { return "no rollouts" }
        return rollouts.map { rollout in
            var lines = DetailList()
            let started = TimeText.date(rollout.at("startedAt")?.stringValue)
            lines.add("started", rollout.at("startedAt").map { "\($0.displayText) (\(TimeText.age(since: $0.stringValue)) ago)" })
            lines.add("ended", rollout.at("endedAt").map { ended in
                let took = TimeText.date(ended.stringValue).flatMap { end in started.map { TimeText.span(seconds: end.timeIntervalSince($0)) } }
                return ended.displayText + (took.map { ", after \($0)" } ?? "")
            })
            lines.add("reason", rollout.at("reason")?.displayText)
            var text = "\(rollout.text("template")) \(rollout.text("from")) → \(rollout.text("to")): \(rollout.text("outcome"))\n"
            text += indented(lines.text, by: "  ")
            let steps = rollout.at("steps")?.arrayValue ?? []
            if !steps.isEmpty { text += "\n  steps:\n" + steps.map { "    " + $0.displayText }.joined(separator: "\n") }
            return text
        }.joined(separator: "\n\n")
    }

    /// `agents/resize`: what the template is now, and which instances changed.
    static func resize(_ result: JSONValue) -> String {
        var lines = DetailList()
        lines.add("template", result.text("template"))
        lines.add("max concurrency", result.text("maxConcurrency"))
        lines.add("resources", resources(result.at("resources")))
        lines.add("instances", result.list("instances") ?? "none running: the next start takes the new size")
        if result.at("instances")?.arrayValue?.isEmpty == false {
            lines.add("limits", result.at("appliedLive")?.boolValue == false
                ? "not all written live (an instance without a control group): they hold from its next start"
                : "applied live")
        }
        return lines.text
    }

    /// `gateway/reload`: what became of each template of the configuration read again.
    static func reload(_ report: JSONValue) -> String {
        var lines = DetailList()
        lines.add("added", report.list("added") ?? "none")
        lines.add("removed", report.list("removed") ?? "none")
        lines.add("rolling out", report.list("rolling") ?? "none")
        lines.add("changed in place", report.list("resized") ?? "none")
        lines.add("unchanged", report.list("unchanged") ?? "none")
        // Only when some template was being rolled out already: the next reload reads it.
        if let deferred = report.list("deferred") { lines.add("left for the next reload", deferred) }
        var text = lines.text
        if report.list("rolling") != nil { text += "\n\n`switchboard fleet rollouts` follows the rollouts." }
        return text
    }

    // MARK: Parts

    private static func templates(_ templates: [JSONValue]) -> String {
        guard !templates.isEmpty else { return "templates: none spawned" }
        var table = TextTable("TEMPLATE", "INSTANCES", "AUTOSCALE", "RESOURCES", "PRIORITY", "COST/H")
        var notes: [String] = []
        for entry in templates {
            let name = entry.text("template")
            table.append([
                name, entry.at("dormant")?.boolValue == true ? "dormant" : entry.text("instances"), autoscale(entry.at("autoscale")),
                resources(entry.at("resources")), entry.text("priorityClass"), money(entry.at("costPerHour")),
            ])
            if let held = entry.at("autoscale.held")?.displayText { notes.append("\(name): held: \(held)") }
            if let pending = entry.at("autoscale.forecastPending")?.displayText { notes.append("\(name): \(pending)") }
            if let sandbox = entry.at("sandbox") { notes.append("\(name): sandbox: \(self.sandbox(sandbox))") }
        }
        return "templates:\n" + table.text + (notes.isEmpty ? "" : "\n\n" + notes.joined(separator: "\n"))
    }

    private static func grants(_ grants: [JSONValue]) -> String {
        guard !grants.isEmpty else { return "grants: none" }
        let now = Date()
        var table = TextTable("AGENT", "TEMPLATE", "CPU", "MEMORY", "GPUS", "PRIORITY", "COST/H", "AGE")
        for grant in grants {
            table.append([
                grant.text("agentId"), grant.text("template"), number(grant.at("cpu")), memory(grant.at("memoryBytes")),
                grant.list("gpus") ?? "-", grant.text("priorityClass"),
                money(grant.at("costPerHour")), TimeText.age(since: grant.at("allocatedAt")?.stringValue, now: now),
            ])
        }
        return "grants:\n" + table.text
    }

    /// `1–3, desired 2`: the bounds, and what the autoscaler last asked for once it has looked.
    private static func autoscale(_ policy: JSONValue?) -> String {
        guard let policy else { return "-" }
        return "\(policy.text("min"))–\(policy.text("max"))" + (policy.at("desired").map { ", desired \($0.displayText)" } ?? "")
    }

    /// `cpu 0.5, memory 256Mi, gpu 1, processes 64`; `-` for none.
    static func resources(_ resources: JSONValue?) -> String {
        guard let resources else { return "-" }
        var parts: [String] = []
        if let cpu = resources.at("cpu") { parts.append("cpu \(number(cpu))") }
        if let bytes = resources.at("memoryBytes") { parts.append("memory \(memory(bytes))") }
        if let gpus = resources.at("gpu") { parts.append("gpu \(gpus.displayText)") }
        if let processes = resources.at("processes") { parts.append("processes \(processes.displayText)") }
        return parts.isEmpty ? "-" : parts.joined(separator: ", ")
    }

    private static func sandbox(_ sandbox: JSONValue) -> String {
        var parts: [String] = []
        if let user = sandbox.at("user") { parts.append("user \(user.displayText)") }
        parts.append("network \(sandbox.text("network"))")
        if let paths = sandbox.list("readOnlyPaths") { parts.append("read-only \(paths)") }
        if let paths = sandbox.list("writablePaths") { parts.append("writable \(paths)") }
        if sandbox.at("privateTmp")?.boolValue == true { parts.append("private /tmp") }
        return parts.joined(separator: "; ")
    }

    private static func amount(_ row: JSONValue) -> String {
        let amount = number(row.at("allocatedAmount"))
        switch row.at("allocatedUnit")?.stringValue {
        case "MiB": return "\(amount)Mi"
        case "cores": return "\(amount) core\(amount == "1" ? "" : "s")"
        case "devices": return "\(amount) GPU\(amount == "1" ? "" : "s")" + (row.list("devices").map { " (\($0))" } ?? "")
        default: return "\(amount) \(row.text("allocatedUnit"))"
        }
    }

    /// ` (prices an hour: 0.04 a core, 0.005 a GiB)`: those set; or a hint when none is.
    private static func prices(_ prices: JSONValue?) -> String {
        let set = [("cpuHour", "a core"), ("memoryGiBHour", "a GiB"), ("gpuHour", "a GPU")].compactMap { key, unit -> String? in
            guard let price = prices?.at(key)?.doubleValue, price > 0 else { return nil }
            return "\(price.text(decimals: 4)) \(unit)"
        }
        return set.isEmpty ? " (no prices set: fleet.prices)" : " (prices an hour: \(set.joined(separator: ", ")))"
    }

    /// A number as the gateway gave it, to 3 decimals; `-` when absent.
    private static func number(_ value: JSONValue?) -> String {
        value?.doubleValue?.text(decimals: 3) ?? value?.displayText ?? "-"
    }

    /// Costs are to 4 decimals (16.3).
    private static func money(_ value: JSONValue?) -> String {
        value?.doubleValue?.text(decimals: 4) ?? "-"
    }

    /// Bytes in the units the configuration writes: `64Mi`, `1.5Gi`.
    static func memory(_ value: JSONValue?) -> String {
        guard let bytes = value?.doubleValue else { return "-" }
        guard bytes > 0 else { return "0" }
        let mebibytes = bytes / 1_048_576
        if mebibytes < 1024 { return "\(mebibytes.text(decimals: 1))Mi" }
        return "\((mebibytes / 1024).text(decimals: 2))Gi"
    }

    /// The table with each row's notes on lines of their own below it, indented.
    private static func interleave(_ table: TextTable, _ notes: [[String]]) -> String {
        let lines = table.text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var output = [lines[0]]
        for (index, line) in lines.dropFirst().enumerated() {
            output.append(line)
            output += notes[index].map { "    " + $0 }
        }
        return output.joined(separator: "\n")
    }

    private static func indented(_ text: String, by prefix: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { prefix + $0 }.joined(separator: "\n")
    }
}
