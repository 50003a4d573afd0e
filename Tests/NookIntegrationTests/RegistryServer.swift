import Foundation
import Testing

/// A real registry (Debian's docker-registry) for one test, on 127.0.0.1 at
/// free ports, with its config and storage in a directory of the test's own
/// (Resources/registry.py). Started as root, stopped by `stop()`.
final class RegistryServer {
    let h = Harness.shared
    let dir: String
    let pid: String
    let port: Int
    /// The fault-playing, request-counting proxy in front (with --proxy).
    let proxyPort: Int?
    let tls: Bool

    /// nil (with the reason recorded) when the registry did not start.
    init?(_ options: [String] = []) {
        dir = h.workspace("registry")
        tls = options.contains("--tls")
        let script = h.resource("registry.py")
        let args = options.map { "'\($0)'" }.joined(separator: " ")
        let start = asRoot("setsid python3 \(script) \(dir) \(args) > \(dir)/out 2>&1 < /dev/null & echo $!")
        pid = start.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        var ready: [String: Int]?
        for _ in 0..<300 {
            if let data = FileManager.default.contents(atPath: dir + "/ready.json"),
               let json = try? JSONSerialization.jsonObject(with: data) as? [String: Int] {
                ready = json
                break
            }
            usleep(100_000)
        }
        guard let ready, let port = ready["registry"] else {
            let out = (try? String(contentsOfFile: dir + "/out", encoding: .utf8)) ?? ""
            Issue.record("the test registry did not start: \(out)")
            _ = asRoot("kill -TERM \(pid) 2>/dev/null")
            return nil
        }
        self.port = port
        proxyPort = ready["proxy"]
        // The test user reads the CA certificate.
        _ = asRoot("chmod 755 \(dir)")
    }

    func stop() {
        _ = asRoot("kill -TERM \(pid) 2>/dev/null; for i in $(seq 50); do kill -0 \(pid) 2>/dev/null || exit 0; sleep 0.1; done; kill -KILL -\(pid) 2>/dev/null; true")
    }

    /// `127.0.0.1:PORT` of the registry, or of the proxy in front.
    var host: String { "127.0.0.1:\(port)" }
    var proxy: String { "127.0.0.1:\(proxyPort ?? port)" }
    var ca: String { dir + "/ca.pem" }

    /// Copies an OCI layout (mkimage.py's) into the registry with skopeo.
    func push(_ layout: String, as name: String, all: Bool = false, creds: String? = nil) {
        var command = "skopeo copy -q --dest-tls-verify=false"
        if all { command += " --all" }
        if let creds { command += " --dest-creds '\(creds)'" }
        let out = asRoot("\(command) oci:\(layout) docker://\(host)/\(name)", timeout: 120)
        #expect(out.status == 0, "skopeo copy to \(host)/\(name): \(out)")
    }

    /// Faults for the proxy to play from now on (see registry.py).
    func faults(_ json: String) {
        FileManager.default.createFile(atPath: dir + "/faults.json", contents: Data(json.utf8))
    }

    /// The proxy's log, one "METHOD PATH STATUS RANGE AUTH" line a request.
    var requests: [String] {
        ((try? String(contentsOfFile: dir + "/requests.log", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// GETs of blobs (layers and configs) the proxy saw, by hex digest.
    func blobGets(_ hex: String) -> Int {
        requests.filter { $0.hasPrefix("GET ") && $0.contains("/blobs/sha256:\(hex)") }.count
    }
}
