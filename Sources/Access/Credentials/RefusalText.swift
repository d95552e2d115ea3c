/// Values from a presented token (its `iss`, `aud`, `kid`, `alg`) may appear in a refusal so
/// the caller can see what was wrong; they are quoted, shortened and stripped of anything but
/// printable ASCII, so a refusal cannot carry a credential-sized blob or forge log lines.
enum RefusalText {
    static let maximumLength = 64

    static func quoted(_ value: String) -> String {
        var text = ""
        for scalar in value.unicodeScalars.prefix(maximumLength) {
            text.unicodeScalars.append((0x20..<0x7F).contains(scalar.value) && scalar != "\"" ? scalar : "?")
        }
        if value.unicodeScalars.count > maximumLength { text += "…" }
        return "\"\(text)\""
    }
}
