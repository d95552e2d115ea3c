import JSONRPC
import Testing
import Workflows

/// Hostile documents: each bound refuses before anything is expanded, and names itself.
@Suite("Bounded documents", .timeLimit(.minutes(1)))
struct DocumentBoundsTests {
    /// "Billion laughs": nine lists of nine, each made of the one before; 10^9 scalars expanded.
    static let billionLaughs = """
        a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
        b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
        c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
        d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
        e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
        f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
        g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
        h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
        i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]

        """

    static func workflow(steps: Int) -> String {
        var text = "workflowName: many\nversion: \"1\"\nsteps:\n"
        for index in 0..<steps { text += "  - {id: s\(index), type: agent_task, tool: t}\n" }
        return text
    }

    func onlyDiagnostic(_ text: String) throws -> WorkflowDiagnostic {
        let diagnostics = WorkflowLoader.diagnostics(of: text)
        try #require(diagnostics.count == 1, "\(diagnostics)")
        return diagnostics[0]
    }

    @Test func theBillionLaughsIsRefusedByItsExpandedSizeAtTheFirstAliasPastTheBound() throws {
        #expect(Self.billionLaughs.utf8.count == 342)
        let diagnostic = try onlyDiagnostic(Self.billionLaughs)
        #expect(diagnostic.message == "the document expands to more than 100000 nodes through its aliases (the limit of expanded size)")
        // f's first *e takes the count past 100,000: the counting stopped there, g to i never expanded.
        #expect(diagnostic.location == SourceLocation(line: 6, column: 8))
    }

    @Test func aliasesUsedAsKeysAreMeasuredBeforeTheParserHashesThem() throws {
        // Yams hashes every key to find duplicates: a key naming i would be walked 10^9 times.
        let diagnostic = try onlyDiagnostic(Self.billionLaughs + "? *i\n: x\n")
        #expect(diagnostic.message.hasSuffix("(the limit of expanded size)"))
    }

    @Test func moreThanAHundredAliasesAreRefused() throws {
        let text = "x: &x 1\nl: [" + Array(repeating: "*x", count: 101).joined(separator: ", ") + "]\n"
        let diagnostic = try onlyDiagnostic(text)
        #expect(diagnostic.message == "the document uses more than 100 aliases (the limit of alias count)")
    }

    @Test func aDocumentNestedDeeperThan64LevelsIsRefused() throws {
        let text = "steps: " + String(repeating: "[", count: 64) + String(repeating: "]", count: 64) + "\n"
        let diagnostic = try onlyDiagnostic(text)
        #expect(diagnostic.message == "the document nests deeper than 64 levels (the limit of depth)")
    }

    @Test func depthCountsWhatAnAliasBringsIn() throws {
        let deep = String(repeating: "[", count: 40) + String(repeating: "]", count: 40)
        let text = "a: &a \(deep)\nb: \(String(repeating: "[", count: 30))*a\(String(repeating: "]", count: 30))\n"
        let diagnostic = try onlyDiagnostic(text)
        #expect(diagnostic.message.hasSuffix("(the limit of depth)"))
        #expect(diagnostic.location?.line == 2)
    }

    @Test func aDocumentLargerThanOneMebibyteIsRefused() throws {
        let text = "workflowName: big\ndescription: \"" + String(repeating: "x", count: 1 << 20) + "\"\n"
        let diagnostic = try onlyDiagnostic(text)
        #expect(diagnostic.message == "the document is larger than 1048576 bytes (the limit of document size)")
    }

    @Test func aWorkflowWithMoreThanAThousandStepsIsRefusedBeforeValidation() throws {
        #expect(WorkflowLoader.diagnostics(of: Self.workflow(steps: 1000)).isEmpty)
        let diagnostic = try onlyDiagnostic(Self.workflow(steps: 1001))
        #expect(diagnostic.message == "the workflow has more than 1000 steps (nested steps and compensations included) (the limit of step count)")
        #expect(diagnostic.path == "steps")
        #expect(diagnostic.location?.line == 3)
    }

    @Test func nestedStepsCountTowardsTheStepBound() throws {
        var text = "workflowName: nested\nversion: \"1\"\nsteps:\n  - id: fan\n    type: parallel\n    branches:\n"
        // Two branches, each a list of 500 steps run in order: 1,001 steps with the parallel.
        for branch in 0..<2 {
            text += "      -\n"
            for index in 0..<500 { text += "        - {id: b\(branch)s\(index), type: agent_task, tool: t}\n" }
        }
        let diagnostic = try onlyDiagnostic(text)
        #expect(diagnostic.message.hasSuffix("(the limit of step count)"))
    }

    @Test func aFewLegitimateAliasesStillWork() throws {
        let text = """
            workflowName: shared-retries
            version: "1"
            steps:
              - id: price
                type: agent_task
                tool: market_signal
                retryPolicy: &retry {maxRetries: 3, backoff: exponential, backoffDelay: 500ms}
              - id: order
                type: agent_task
                tool: place_order
                dependencies: [price]
                retryPolicy: *retry
                input: {note: "2 * 3 is not an alias", cron: "30 16 * * MON-FRI"}
            """
        let definition = try WorkflowLoader.load(text)
        #expect(definition.stepCount == 2)
        guard case .array(let steps)? = definition.document["steps"] else {
            Issue.record("no steps in \(definition.document)")
            return
        }
        #expect(steps[1]["retryPolicy"]?["maxRetries"] == 3)
    }

    @Test func aJSONDefinitionTooDeepIsRefusedBeforeItIsWrittenOut() async throws {
        var value: JSONValue = "leaf"
        for _ in 0..<100 { value = ["nested": value] }
        let document: JSONValue = ["workflowName": "deep", "version": "1", "steps": [], "inputs": value]
        #expect(throws: WorkflowDefinitionError.self) { try WorkflowLoader.load(document: document) }
        do {
            _ = try WorkflowLoader.load(document: document)
        } catch {
            #expect(error.diagnostics.map(\.message) == ["the document nests deeper than 64 levels (the limit of depth)"])
        }
    }

    @Test func workflowsCreateAnswersTheBombWithInvalidParamsNamingTheBound() async throws {
        try await Harness().running { harness in
            let methods = WorkflowMethods(executor: harness.executor)
            do {
                _ = try await methods.handle(method: "workflows/create", params: ["source": .string(Self.billionLaughs)])
                Issue.record("the bomb was stored")
            } catch let error as JSONRPCError {
                #expect(error.code == -32602)
                #expect(error.message.contains("the document expands to more than 100000 nodes through its aliases (the limit of expanded size)"))
                guard case .array(let problems)? = error.data?["problems"] else {
                    Issue.record("no problems in \(String(describing: error.data))")
                    return
                }
                #expect(problems.first?["line"] == 6)
            }
        }
    }
}
