import Access
import ArgumentParser

struct AuthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "auth",
        abstract: "Work with credentials.",
        subcommands: [HashKey.self]
    )

    struct HashKey: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "hash-key",
            abstract: "Print an API key's SHA-256, as auth.apiKeys[].sha256 takes it.",
            discussion: "Reads the key from standard input when none is given (so that it stays out of the shell's history)."
        )

        @Argument(help: "The API key.")
        var key: String?

        func run() throws {
            let given = self.key ?? readLine(strippingNewline: true) ?? ""
            let key = String(given.drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
            guard !key.isEmpty else { throw ValidationError("no key given") }
            print(Authenticator.sha256Hex(key))
        }
    }
}
