import Agents
import JSONRPC

/// What one agent call of a task came to, in the words a task record keeps. Both task engines
/// judge attempts the same way, and workflow steps word a tool's error as they do.
public enum AttemptVerdict {
    case succeeded(RawJSON)
    /// The call was cancelled: whoever cancelled it settles the task.
    case cancelled
    case failed(message: String, kind: FailureKind)

    public init(_ outcome: Result<RawJSON, any Error>) {
        switch outcome {
        case .success(let result):
            if result.member("isError")?.decoded() == .bool(true) {
                self = .failed(message: "the tool reported an error: \(Self.text(of: result))", kind: .toolError)
            } else {
                self = .succeeded(result)
            }
        case .failure(is AgentCallCancelled): self = .cancelled
        case .failure(let error as AgentCallTimedOut): self = .failed(message: "no answer within \(error.timeout)", kind: .timeout)
        case .failure(let error as AgentEndpointClosed): self = .failed(message: "the agent failed: \(error.reason)", kind: .agentFailure)
        case .failure(let error as JSONRPCError):
            // Arguments the agent refused, or a reply too large to take, would fare no better on
            // another try.
            let kind: FailureKind =
                error.code == JSONRPCError.Code.invalidParams || error.code == JSONRPCError.Code.messageTooLarge ? .invalidRequest : .toolError
            self = .failed(message: "the agent answered with error \(error.code): \(error.message)", kind: kind)
        case .failure(let error): self = .failed(message: "\(error)", kind: .agentFailure)
        }
    }

    /// The text blocks of a tool result, or "no details".
    private static func text(of result: RawJSON) -> String {
        guard let content = result.member("content"), case .array(let blocks) = content.decoded() else { return "no details" }
        let texts = blocks.compactMap { $0["text"]?.stringValue }
        return texts.isEmpty ? "no details" : texts.joined(separator: " ")
    }
}

/// Why an attempt failed, as far as deciding on a retry goes (`retryOn`).
public enum FailureKind: String, Sendable, CaseIterable {
    /// The agent crashed, its connection closed, or it could not be reached.
    case agentFailure
    case timeout
    /// The tool ran and reported an error (`isError`), or the agent answered with an error.
    case toolError
    /// The agent refused the arguments (invalid params), or its reply was too large: another
    /// try would end the same way. Never retried.
    case invalidRequest

    public var isTimeout: Bool { self == .timeout }

    /// What a task retries on unless it says otherwise: everything worth another try.
    public static let retriedByDefault: Set<FailureKind> = [.agentFailure, .timeout, .toolError]
}

extension TaskRecord {
    /// "all N attempts failed: #1 on AGENT: REASON; …", for a task whose every attempt failed.
    var everyAttemptFailed: String {
        "all \(attempts.count) attempts failed: "
            + attempts.enumerated().map { "#\($0.offset + 1) on \($0.element.agent): \($0.element.error ?? "?")" }.joined(separator: "; ")
    }
}
