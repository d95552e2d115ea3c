/// The names under which agents' tools (and prompts) are exposed to clients.
///
/// A name offered by one template is exposed as it is; a name offered by several templates is
/// namespaced as `template__name` for each. Every exposed name matches
/// `^[a-zA-Z0-9_-]{1,64}$`: other characters become `_`, and a name too long is cut and given a
/// short hash of the whole so that two long names stay apart.
public enum ToolNaming {
    public static let maximumLength = 64

    /// Maps each `(template, name)` to its exposed name.
    public static func exposedNames(offeredBy templates: [String: [String]]) -> [ExposedName: Origin] {
        var offeredCount: [String: Int] = [:]
        for names in templates.values {
            for name in Set(names) { offeredCount[name, default: 0] += 1 }
        }
        var result: [ExposedName: Origin] = [:]
        for template in templates.keys.sorted() {
            for name in Set(templates[template]!).sorted() {
                let shared = offeredCount[name, default: 0] > 1
                var exposed = sanitized(shared ? "\(template)__\(name)" : name)
                if result[exposed] != nil {
                    // Two names that differ only in characters we had to replace.
                    exposed = withHash(exposed, of: "\(template)/\(name)")
                }
                result[exposed] = Origin(template: template, name: name)
            }
        }
        return result
    }

    public typealias ExposedName = String

    public struct Origin: Sendable, Hashable {
        public var template: String
        public var name: String

        public init(template: String, name: String) {
            self.template = template
            self.name = name
        }
    }

    static func sanitized(_ name: String) -> String {
        var scalars = String.UnicodeScalarView()
        for scalar in name.unicodeScalars {
            let allowed = (scalar >= "a" && scalar <= "z") || (scalar >= "A" && scalar <= "Z")
                || (scalar >= "0" && scalar <= "9") || scalar == "_" || scalar == "-"
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
