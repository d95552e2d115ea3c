import CSwitchboardOpenSSL

/// One entry of OpenSSL's per-thread error queue.
struct OpenSSLError: Sendable, Hashable {
    let library: Int32
    let reason: Int32
    /// OpenSSL's short text for the reason, e.g. "certificate verify failed".
    let reasonText: String
}

/// OpenSSL reports failures through a queue per thread. Every operation that can fail clears it
/// first and drains it after, so that one connection's leftovers never explain another
/// connection's failure on the same event loop thread.
enum OpenSSLErrorQueue {
    static func clear() {
        ERR_clear_error()
    }

    /// Takes every entry off the queue, oldest first.
    static func drain() -> [OpenSSLError] {
        var errors: [OpenSSLError] = []
        while true {
            let code = ERR_get_error()
            guard code != 0 else { return errors }
            let text = ERR_reason_error_string(code).map { String(cString: $0) } ?? "error \(code)"
            errors.append(
                OpenSSLError(
                    library: switchboard_ERR_GET_LIB(code),
                    reason: switchboard_ERR_GET_REASON(code),
                    reasonText: text
                )
            )
        }
    }

    /// The drained queue as one clause, most specific entry last, for messages with no better words.
    static func drainedDescription(orElse fallback: String) -> String {
        let texts = drain().map(\.reasonText)
        return texts.isEmpty ? fallback : texts.joined(separator: "; ")
    }
}

/// Reading and writing OpenSSL memory BIOs.
enum MemoryBIO {
    /// Everything readable in `bio`, as bytes.
    static func readAll(_ bio: OpaquePointer) -> [UInt8] {
        let pending = Int(BIO_ctrl_pending(bio))
        guard pending > 0 else { return [] }
        return [UInt8](unsafeUninitializedCapacity: pending) { buffer, count in
            let read = BIO_read(bio, buffer.baseAddress, Int32(clamping: pending))
            count = max(0, Int(read))
        }
    }

    /// Runs `body` with a fresh memory BIO and returns what it wrote there as text.
    static func text(_ body: (OpaquePointer) -> Void) -> String? {
        guard let bio = BIO_new(BIO_s_mem()) else { return nil }
        defer { BIO_free(bio) }
        body(bio)
        return String(decoding: readAll(bio), as: UTF8.self)
    }
}
