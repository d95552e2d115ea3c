import Agents
import JSONRPC

/// What one agent call of a task came to, in the words a task record keeps. Both task engines
/// judge attempts the same way, and workflow steps word a tool's error as they do.
public enum AttemptVerdict {
    case succeeded(RawJSON)
    /// The call was cancelled: whoever cancelled it settles the task.
    case cancelled
    case failed(message: String, isTimeout: Bool)

    public init(_ outcome: Result<RawJSON, any Error>) {
        switch outcome {
        case .success(let result):
            if result.member("isError")?.decoded() == .bool(true) {
                self = .failed(message: "the tool reported an error: \(Self.text(of: result))", isTimeout: false)
            } else {
                self = .succeeded(result)
            }
        case .failure(is AgentCallCancelled): self = .cancelled
        case .failure(let error as AgentCallTimedOut): self = .failed(message: "no answer within \(error.timeout)", isTimeout: true)
        case .failure(let error as AgentEndpointClosed): self = .failed(message: "the agent failed: \(error.reason)", isTimeout: false)
        case .failure(let error as JSONRPCError):
            self = .failed(message: "the agent answered with error \(error.code): \(error.message)", isTimeout: false)
        case .failure(let error): self = .failed(message: "\(error)", isTimeout: false)
        }
    }

    /// The text blocks of a tool result, or "no details".
    private static func text(of result: RawJSON) -> String {
        guard let content = result.member("content"), case .array(let blocks) = content.decoded() else { return "no details" }
        let texts = blocks.compactMap { $0["text"]?.stringValue }
        return texts.isEmpty ? "no details" : texts.joined(separator: " ")
    }
}

extension TaskRecord {
    /// "all N attempts failed: #1 on AGENT: REASON; …", for a task whose every attempt failed.
    var everyAttemptFailed: String {
        "all \(attempts.count) attempts failed: "
            + attempts.enumerated().map { "#\($0.offset + 1) on \($0.element.agent): \($0.element.error ?? "?")" }.joined(separator: "; ")
    }
}
