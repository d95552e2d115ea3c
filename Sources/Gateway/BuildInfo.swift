import CSwitchboardHiredis
import CSwitchboardOpenSSL

/// The gateway's version and the system libraries it is linked against.
public enum BuildInfo {
    public static let version = "0.1.0"

    /// The OpenSSL the process runs with (not the headers it was built against).
    public static var openSSLVersion: String {
        String(cString: OpenSSL_version(OPENSSL_VERSION))
    }

    public static var hiredisVersion: String {
        "\(HIREDIS_MAJOR).\(HIREDIS_MINOR).\(HIREDIS_PATCH)"
    }
}
