import Agents
import Yams

extension ConfigurationReader {
    /// The keys that say what a spawned agent may inherit and which files it must run:
    /// `inheritEnvironment`, `sha256`, `scriptSha256`. Ours in any section (a host's file does
    /// not use them), so a bad value is always a problem, never a warning.
    mutating func readLaunchKey(_ key: String, _ value: Node, path: String, into template: inout AgentTemplate) {
        switch key {
        case "inheritEnvironment":
            guard case .scalar(let scalar) = value, let flag = Bool(scalar.string) else {
                report(value, "\(path).inheritEnvironment must be true or false")
                return
            }
            template.inheritEnvironment = flag
        case "sha256", "scriptSha256":
            guard let text = string(value, "\(path).\(key)") else { return }
            let digest = text.lowercased()
            guard digest.utf8.count == 64, digest.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
                report(value, "\(path).\(key) must be 64 hexadecimal digits (a SHA-256, as sha256sum prints it)")
                return
            }
            if key == "sha256" { template.executableSHA256 = digest } else { template.scriptSHA256 = digest }
        default:
            break
        }
    }
}
