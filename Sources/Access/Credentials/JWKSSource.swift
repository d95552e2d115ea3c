import Foundation
import Logging
import NIOCore
import NIOPosix

/// Where the JWKS document comes from: a file the operator maintains, or the identity
/// provider's URL. Either way the document is at most `maximumSize` bytes.
enum JWKSSource: Sendable, CustomStringConvertible {
    case file(String)
    case url(String, HTTPEndpoint)

    static let maximumSize = 1024 * 1024

    init?(_ settings: JWTSettings) {
        if let path = settings.jwksFile {
            self = .file(path)
        } else if let url = settings.jwksURL, let endpoint = HTTPEndpoint(url) {
            self = .url(url, endpoint)
        } else {
            return nil
        }
    }

    var description: String {
        switch self {
        case .file(let path): "JWKS file \(path)"
        case .url(let url, _): "JWKS URL \(url)"
        }
    }

    func load(group: any EventLoopGroup, logger: Logger) async throws(JWKSLoadError) -> ByteBuffer {
        switch self {
        case .file(let path): try await Self.read(path)
        case .url(_, let endpoint): try await JWKSDownloader(group: group, maximumBodySize: Self.maximumSize).get(endpoint)
        }
    }

    /// Reads the file on NIO's blocking-I/O pool, not on a task's thread.
    private static func read(_ path: String) async throws(JWKSLoadError) -> ByteBuffer {
        let outcome: Result<ByteBuffer, JWKSLoadError>
        do {
            outcome = try await NIOThreadPool.singleton.runIfActive {
                guard let handle = FileHandle(forReadingAtPath: path) else {
                    return .failure(JWKSLoadError("cannot open \(path)"))
                }
                defer { try? handle.close() }
                guard let data = try handle.read(upToCount: maximumSize + 1) else { return .success(ByteBuffer()) }
                guard data.count <= maximumSize else {
                    return .failure(JWKSLoadError("\(path) is larger than \(maximumSize) bytes"))
                }
                return .success(ByteBuffer(bytes: data))
            }
        } catch {
            throw JWKSLoadError("cannot read \(path): \(error)")
        }
        return try outcome.get()
    }
}
