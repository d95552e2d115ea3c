/// A method pattern of `audit/query`: `*` stands for any run of characters (`/` included), `?` for
/// one; everything else for itself. `tools/*` matches `tools/call` and `tools/list`.
struct AuditGlob: Sendable, Equatable {
    private let pattern: [Unicode.Scalar]

    init(_ pattern: String) {
        self.pattern = Array(pattern.unicodeScalars)
    }

    /// Backtracks to the last `*` only: at most pattern × text steps, whatever the pattern.
    func matches(_ text: String) -> Bool {
        let text = Array(text.unicodeScalars)
        var p = 0
        var t = 0
        var star: (pattern: Int, text: Int)?
        while t < text.count {
            if p < pattern.count, pattern[p] == "*" {
                star = (p, t)
                p += 1
            } else if p < pattern.count, pattern[p] == "?" || pattern[p] == text[t] {
                p += 1
                t += 1
            } else if let last = star {
                p = last.pattern + 1
                t = last.text + 1
                star = (last.pattern, last.text + 1)
            } else {
                return false
            }
        }
        while p < pattern.count, pattern[p] == "*" { p += 1 }
        return p == pattern.count
    }
}
