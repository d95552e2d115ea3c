/// Whose history a series is: an agent instance's, or a sum kept beside them — every call of a
/// template's instances, and every call of the gateway — so that a chart of a template or of the
/// whole gateway reads one series rather than merging every instance's, including those gone.
public enum HistorySubject {
    /// The whole gateway's calls.
    public static let gateway = "*"

    /// Every call of a template's instances.
    public static func template(_ name: String) -> String {
        "template:" + name
    }

    /// Whether `id` is a sum rather than an agent. An agent's id always holds a "#" (`NAME#N`)
    /// or an "@" (`NAME@CONNECTION`, `ID@REPLICA`), and a template's name holds neither: an
    /// agent named `template:x` is `template:x@3`, never a sum.
    public static func isAggregate(_ id: String) -> Bool {
        (id == gateway || id.hasPrefix("template:")) && !id.utf8.contains(UInt8(ascii: "#")) && !id.utf8.contains(UInt8(ascii: "@"))
    }

    /// The series a call of `agent` counts in, each with the template it is recorded with: the
    /// sums first, so that when the series bound is reached an agent's own series is refused
    /// before the gateway's or its template's sum stops counting.
    static func counting(agent: String, template: String?) -> [(subject: String, template: String?)] {
        guard let template, !template.isEmpty else { return [(gateway, nil), (agent, nil)] }
        return [(gateway, nil), (Self.template(template), template), (agent, template)]
    }
}
