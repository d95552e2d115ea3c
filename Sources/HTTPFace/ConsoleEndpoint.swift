import Console
import JSONRPC
import NIOCore
import NIOHTTP1

/// `/console/`: the console's files. They hold no data and no secret — everything the console
/// shows it asks for over `/ws` as the logged-in principal, decided like any other request — so
/// they are served to anyone who reaches the listener, as a login page is.
extension HTTPConnectionHandler {
    /// What a page of the console may do: its own scripts and styles, and the gateway's
    /// WebSocket (`'self'` covers ws: and wss: of the page's own host); nothing inline, nothing
    /// from elsewhere, never inside another site's frame.
    static let consoleSecurityHeaders: [(String, String)] = [
        ("content-security-policy",
         "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        // Revalidated on each load (a 304 while unchanged): a new gateway's console is never
        // mixed with an old one's cached modules.
        ("cache-control", "no-cache"),
    ]

    /// `If-None-Match` (RFC 9110, 13.1.2): `*`, or a list of tags compared weakly (`W/"x"`
    /// matches `"x"`).
    static func matches(_ header: String, etag: String) -> Bool {
        header.split(separator: ",").contains { candidate in
            let tag = candidate.trimmingSpaces
            return tag == "*" || (tag.hasPrefix("W/") ? tag.dropFirst(2) : tag) == Substring(etag)
        }
    }

    func serveConsole(_ head: HTTPRequestHead, path: String) {
        guard let console = face.settings.console else {
            respondError(.notFound, JSONRPCError(code: JSONRPCError.Code.methodNotFound, message: "the console is turned off (http.console: false)"))
            return
        }
        guard head.method == .GET || head.method == .HEAD else {
            respondError(
                .methodNotAllowed, JSONRPCError(code: JSONRPCError.Code.invalidRequest, message: "the console's files are read with GET"),
                headers: [("allow", "GET, HEAD")])
            return
        }
        if path == "/console" {
            // Relative module URLs resolve against the folder: the page lives at /console/.
            respond(.movedPermanently, headers: [("location", "/console/")], body: ByteBuffer())
            return
        }
        var file = String(path.dropFirst("/console/".count)).removingPercentEncoding(plusIsSpace: false)
        if file.isEmpty { file = "index.html" }
        guard let asset = console.asset(at: file) else {
            respondError(.notFound, JSONRPCError(code: JSONRPCError.Code.methodNotFound, message: "no such file of the console: \(file)"))
            return
        }
        var headers = Self.consoleSecurityHeaders
        headers.append(("etag", asset.etag))
        if let held = head.headers.first(name: "if-none-match"), Self.matches(held, etag: asset.etag) {
            // The length of the 200 it stands for, as RFC 9110 (8.6) allows, never 0.
            respond(.notModified, contentType: asset.contentType, headers: headers, body: ByteBuffer(), declaredLength: asset.body.count)
            return
        }
        if head.method == .HEAD {
            respond(.ok, contentType: asset.contentType, headers: headers, body: ByteBuffer(), declaredLength: asset.body.count)
            return
        }
        respond(.ok, contentType: asset.contentType, headers: headers, body: ByteBuffer(bytes: asset.body))
    }
}
