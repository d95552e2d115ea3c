import Testing
import Workflows

@Test func workflowNamesCompareByValue() {
    #expect(WorkflowName("a") == WorkflowName("a"))
    #expect(WorkflowName("a") != WorkflowName("b"))
}
