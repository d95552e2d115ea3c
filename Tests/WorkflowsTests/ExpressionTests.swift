import JSONRPC
import Testing
import Workflows

@Suite("Expressions")
struct ExpressionTests {
    let scope = ExpressionScope(
        variables: [
            "inputs": ["symbol": "AAPL", "quantity": 100, "limits": [1, 2.5, 3]],
            "trigger": ["type": "event", "payload": ["x": 7, "tags": ["a", "b"]]],
            "iteration": 2,
        ],
        stepValue: { id in
            id == "fetch" ? ["status": "COMPLETED", "result": ["price": 187.5, "prices": [180, 187.5]]] : nil
        })

    func value(_ text: String) throws -> JSONValue {
        try WorkflowExpression(parsing: text).evaluate(in: scope)
    }

    func error(_ text: String) -> ExpressionError? {
        do {
            _ = try WorkflowExpression(parsing: text).evaluate(in: scope)
            return nil
        } catch {
            return error
        }
    }

    @Test func arithmeticFollowsPrecedence() throws {
        #expect(try value("1 + 2 * 3") == 7)
        #expect(try value("(1 + 2) * 3") == 9)
        #expect(try value("7 / 2") == 3.5)
        #expect(try value("6 / 3") == 2)
        #expect(try value("7 % 3") == 1)
        #expect(try value("-inputs.quantity + 1") == -99)
        #expect(try value("2 * 1.5") == 3.0)
    }

    @Test func plusJoinsStrings() throws {
        #expect(try value("inputs.symbol + \"-\" + inputs.quantity") == "AAPL-100")
        #expect(try value("'qty ' + 1.5") == "qty 1.5")
    }

    @Test func pathsReadInputsStepsTriggerAndIndexes() throws {
        #expect(try value("inputs.symbol") == "AAPL")
        #expect(try value("steps.fetch.result.price") == 187.5)
        #expect(try value("steps.fetch.status") == "COMPLETED")
        #expect(try value("steps.fetch.result.prices[1]") == 187.5)
        #expect(try value("steps[\"fetch\"].result[\"price\"]") == 187.5)
        #expect(try value("trigger.payload.x") == 7)
        #expect(try value("trigger.payload.tags[0]") == "a")
        #expect(try value("iteration") == 2)
    }

    @Test func missingMembersAreNull() throws {
        #expect(try value("inputs.nothing") == .null)
        #expect(try value("inputs.nothing.deeper") == .null)
        #expect(try value("steps.unknown.result") == .null)
        #expect(try value("trigger.payload.tags[9]") == .null)
    }

    @Test func comparisonsAndLogic() throws {
        #expect(try value("steps.fetch.result.price > 180 && inputs.symbol == 'AAPL'") == true)
        #expect(try value("1 == 1.0") == true)
        #expect(try value("'abc' < 'abd'") == true)
        #expect(try value("not (1 >= 2) and (false or true)") == true)
        #expect(try value("!inputs.nothing") == true)
    }

    @Test func andShortCircuits() throws {
        #expect(try value("false && 1 / 0 > 1") == false)
        #expect(try value("true || 1 / 0 > 1") == true)
    }

    @Test func functions() throws {
        #expect(try value("len(inputs.symbol)") == 4)
        #expect(try value("len(inputs.limits)") == 3)
        #expect(try value("min(inputs.limits)") == 1)
        #expect(try value("max(3, 9, 4)") == 9)
        #expect(try value("abs(-2.5)") == 2.5)
        #expect(try value("round(2.345, 2)") == 2.35)
        #expect(try value("round(2.5)") == 3)
        #expect(try value("contains(inputs.symbol, 'AP')") == true)
        #expect(try value("contains(trigger.payload.tags, 'b')") == true)
        #expect(try value("contains(inputs, 'quantity')") == true)
        #expect(try value("startsWith(inputs.symbol, 'AA')") == true)
        #expect(try value("lower(inputs.symbol) + upper('x')") == "aaplX")
        #expect(try value("exists(steps.fetch.result.price) && !exists(inputs.nothing)") == true)
    }

    @Test func syntaxErrorsCarryTheirColumn() {
        #expect(error("1 +") == ExpressionError("expected a value, a name or '(', found the end of the expression", column: 4))
        #expect(error("a = 1")?.column == 3)
        #expect(error("inputs.x & 1")?.message == "'&' is not an operator: use '&&' or 'and'")
        #expect(error("foo(1)")?.column == 1)
        #expect(error("lenn(inputs.symbol)")?.message.contains("did you mean len()?") == true)
        #expect(error("1 < 2 < 3")?.message.contains("do not chain") == true)
        #expect(error("'abc")?.column == 1)
        #expect(error("len(1, 2)")?.message == "len() takes 1 argument, not 2")
        #expect(error("inputs.")?.column == 8)
        #expect(error("(1 + 2")?.column == 7)
        #expect(error("[1]")?.column == 1)
    }

    @Test func evaluationErrorsCarryTheirColumn() {
        #expect(error("inputs.quantity / 0") == ExpressionError("division by zero", column: 17))
        #expect(error("'a' < 1")?.message == "cannot compare a string with a number using '<'")
        #expect(error("inputs.symbol.length.x")?.column == 15)
        #expect(error("len(3)")?.message == "len() takes a string, an array or an object, not a number")
        #expect(error("unknown + 1")?.message == "unknown name unknown")
    }

    @Test func limitsBoundDepthAndLength() {
        let deep = String(repeating: "(", count: 100) + "1" + String(repeating: ")", count: 100)
        #expect(error(deep)?.message.contains("nests deeper than 64") == true)
        let long = Array(repeating: "1", count: 3_000).joined(separator: "+")
        #expect(error(long)?.message.contains("longer than 4096") == true)
    }

    @Test func referencesNameRootsAndFirstMembers() throws {
        let expression = try WorkflowExpression(parsing: "steps.fetch.result.price > inputs.limit && item")
        #expect(expression.references.map(\.root) == ["steps", "inputs", "item"])
        #expect(expression.references.map(\.member) == ["fetch", "limit", nil])
        #expect(expression.references[1].memberColumn == 35)
    }
}
