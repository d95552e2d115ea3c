/// Whose history a series is: an agent instance's, or a sum kept beside them — every call of a
/// template's instances, and every call of the gateway — so that a chart of a template or of the
/// whole gateway reads one series rather than merging every instance's, including those gone.
public enum HistorySubject {
    /// The whole gateway's calls. No agent id can be "*": ids are `NAME#N` or `NAME@CONNECTION`.
    public static let gateway = "*"

    /// Every call of a template's instances. An agent name has no ":", so this is no agent's id.
    public static func template(_ name: String) -> String {
        templatePrefix + name
    }

    static let templatePrefix = "template:"

    /// Whether `id` is a sum rather than an agent.
    public static func isAggregate(_ id: String) -> Bool {
        id == gateway || id.hasPrefix(templatePrefix)
    }

    /// The series a call of `agent` counts in, each with the template it is recorded with.
    static func counting(agent: String, template: String?) -> [(subject: String, template: String?)] {
        guard let template, !template.isEmpty else { return [(agent, nil), (gateway, nil)] }
        return [(agent, template), (Self.template(template), template), (gateway, nil)]
    }
}
