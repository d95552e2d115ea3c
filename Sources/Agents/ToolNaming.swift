/// The names under which agents' tools (and prompts) are exposed to clients.
///
/// A name offered by one template is exposed as it is; a name offered by several templates is
/// namespaced as `template__name` for each, and the bare name is then ambiguous. A template may
/// carry a prefix of its own, set up front: its names are always exposed with it.
///
/// Names are stable: once a name is *pinned* (listed to a client, called, or settled after the
/// start-up window) it names the same tool for the registry's life. A template that comes later
/// offering a pinned name gets the namespaced form, never the pinned one; a pinned name whose
/// tool is gone for now is kept free for it. Every exposed name matches `^[a-zA-Z0-9_-]{1,64}$`:
/// other characters become `_`, and a name too long is cut and given a short hash of the whole
/// so that two long names stay apart.
public enum ToolNaming {
    public static let maximumLength = 64

    public typealias ExposedName = String

    public struct Origin: Sendable, Hashable {
        public var template: String
        public var name: String

        public init(template: String, name: String) {
            self.template = template
            self.name = name
        }
    }

    /// The exposed names, and the bare names that several templates offer and none keeps.
    public struct Catalog: Sendable, Equatable {
        public var names: [ExposedName: Origin] = [:]
        /// Bare name → the exposed names of its candidates, sorted.
        public var ambiguous: [String: [ExposedName]] = [:]

        public init() {}
    }

    /// Maps each `(template, name)` to its exposed name, keeping `pinned` names where they are.
    public static func catalog(
        offeredBy templates: [String: [String]], prefixes: [String: String] = [:], pinned: [ExposedName: Origin] = [:]
    ) -> Catalog {
        var offeredCount: [String: Int] = [:]
        var offered = Set<Origin>()
        for (template, names) in templates {
            for name in Set(names) {
                // A prefixed template's names never clash with the bare ones.
                if prefixes[template] == nil { offeredCount[name, default: 0] += 1 }
                offered.insert(Origin(template: template, name: name))
            }
        }
        var catalog = Catalog()
        var named = Set<Origin>()
        for (exposed, origin) in pinned where offered.contains(origin) {
            catalog.names[exposed] = origin
            named.insert(origin)
        }
        // A pinned name stays reserved for its tool even while no instance offers it.
        func isTaken(_ name: String) -> Bool { catalog.names[name] != nil || pinned[name] != nil }
        // Templates with a prefix first: their names are set up front and never yield to a bare
        // name that happens to look the same.
        let order = templates.keys.sorted { (prefixes[$0] == nil ? 1 : 0, $0) < (prefixes[$1] == nil ? 1 : 0, $1) }
        for template in order {
            for name in Set(templates[template]!).sorted() where !named.contains(Origin(template: template, name: name)) {
                var exposed: String
                if let prefix = prefixes[template] {
                    exposed = sanitized(prefix + name)
                } else if offeredCount[name, default: 0] == 1, !isTaken(sanitized(name)) {
                    exposed = sanitized(name)
                } else {
                    exposed = sanitized("\(template)__\(name)")
                }
                if isTaken(exposed) {
                    // Two names that differ only in characters we had to replace.
                    exposed = withHash(exposed, of: "\(template)/\(name)")
                }
                catalog.names[exposed] = Origin(template: template, name: name)
            }
        }
        var candidates: [String: [ExposedName]] = [:]
        for (exposed, origin) in catalog.names where offeredCount[origin.name, default: 0] > 1 && prefixes[origin.template] == nil {
            candidates[sanitized(origin.name), default: []].append(exposed)
        }
        for (bare, exposed) in candidates where catalog.names[bare] == nil {
            catalog.ambiguous[bare] = exposed.sorted()
        }
        return catalog
    }

    /// The exposed names alone (no prefixes, nothing pinned).
    public static func exposedNames(offeredBy templates: [String: [String]]) -> [ExposedName: Origin] {
        catalog(offeredBy: templates).names
    }

    /// Whether `name` can be exposed as it is.
    public static func isValidExposedName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= maximumLength && name.utf8.allSatisfy(isAllowed)
    }

    private static func isAllowed(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
            || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
    }

    static func sanitized(_ name: String) -> String {
        if isValidExposedName(name) { return name }
        var scalars = String.UnicodeScalarView()
        for scalar in name.unicodeScalars {
            let allowed = scalar.isASCII && isAllowed(UInt8(scalar.value))
            scalars.append(allowed ? scalar : "_")
        }
        let clean = scalars.isEmpty ? "_" : String(scalars)
        return clean.count <= maximumLength ? clean : withHash(clean, of: name)
    }

    static func withHash(_ name: String, of original: String) -> String {
        // FNV-1a: stable across runs and platforms, unlike `hashValue`.
        var hash: UInt32 = 2_166_136_261
        for byte in original.utf8 {
            hash ^= UInt32(byte)
            hash = hash &* 16_777_619
        }
        let suffix = "_" + String(hash, radix: 16)
        return String(name.prefix(maximumLength - suffix.count)) + suffix
    }
}
