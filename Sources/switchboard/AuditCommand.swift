import Access
import ArgumentParser

struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Work with audit log files.",
        subcommands: [Verify.self]
    )

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check an audit file's hash chain.",
            discussion: """
                Prints "ok: N entries, last hash HASH" (exit 0), or the first problem as \
                "line L: KIND: detail" (exit 1), KIND being changed, removed, reordered or malformed. \
                A file cannot show that entries were removed from its end: give the last hash noted \
                elsewhere (the Redis stream, or an earlier run of this command) with --expect-last, and \
                the file must contain it. Exit 2 when the file cannot be read.
                """
        )

        @Argument(help: "The audit file.")
        var file: String

        @Option(name: .customLong("expect-last"), help: ArgumentHelp("A hash the file must contain: HASH, or SEQUENCE:HASH.", valueName: "hash"))
        var expectLast: String?

        func validate() throws {
            if let expectLast, AuditVerifier.ExpectedLast(parsing: expectLast) == nil {
                throw ValidationError("--expect-last takes 64 hex digits, optionally preceded by a sequence number and a colon")
            }
        }

        func run() throws {
            let verifier = AuditVerifier(expectedLast: expectLast.flatMap(AuditVerifier.ExpectedLast.init(parsing:)))
            let outcome: Result<AuditVerifier.Summary, AuditVerifier.Problem>
            do {
                outcome = try verifier.verify(path: file)
            } catch {
                printError("switchboard: \(error)")
                throw ExitCode(2)
            }
            switch outcome {
            case .success(let summary):
                print(summary.description)
            case .failure(let problem):
                print(problem.description)
                throw ExitCode(1)
            }
        }
    }
}
