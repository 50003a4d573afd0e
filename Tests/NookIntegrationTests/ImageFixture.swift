import Foundation
import Testing

/// A workspace of the test user with its own image store
/// (XDG_DATA_HOME inside it), and images built there at test time by
/// Resources/mkimage.py, run as the test user.
struct ImageFixture {
    let h = Harness.shared
    let ws: String

    init() {
        ws = h.workspace("img")
        // No test may reach a registry on the internet: short names are
        // looked up nowhere (nook run NAME -- of a missing image fails
        // instead of asking docker.io).
        h.sh("mkdir -p config/nook && echo 'unqualified-search-registries = []' > config/nook/registries.toml", in: ws)
    }

    var env: [String: String] {
        ["XDG_DATA_HOME": ws + "/data", "XDG_CONFIG_HOME": ws + "/config", "REGISTRY_AUTH_FILE": ws + "/auth.json"]
    }
    var store: String { ws + "/data/nook/store" }

    @discardableResult
    func nook(_ args: [String], as other: TestUser? = nil, timeout: TimeInterval = 120) -> Outcome {
        h.nook(args, in: ws, env: env, as: other, timeout: timeout)
    }

    @discardableResult
    func sh(_ script: String, as other: TestUser? = nil, timeout: TimeInterval = 120) -> Outcome {
        h.sh(script, in: ws, env: env, as: other, timeout: timeout)
    }

    /// Builds the image SPEC describes (see mkimage.py) at ws/NAME.
    func make(_ name: String, _ spec: String) -> String {
        let specPath = "\(ws)/\(name).json"
        h.write(specPath, spec)
        let out = h.sh("python3 \(h.resource("mkimage.py")) \(specPath) \(ws)/\(name)", in: ws)
        #expect(out.status == 0, "building \(name): \(out)")
        return "\(ws)/\(name)"
    }

    /// The names in a store directory (layers, images, tmp, trash, blobs/sha256).
    func entries(_ subdirectory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "\(store)/\(subdirectory)")) ?? []).sorted()
    }

    /// True when the store holds no image, layer or leftover.
    var storeIsEmpty: Bool {
        entries("layers").isEmpty && entries("images").isEmpty && entries("tmp").isEmpty && entries("trash").isEmpty
            && entries("blobs/sha256").isEmpty
    }

    /// The image's layer directories, lowest first, from `nook image inspect`.
    func layers(_ name: String) -> [String] {
        let out = nook(["image", "inspect", name])
        guard let data = out.stdout.data(using: .utf8),
              let json = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]],
              let layers = json.first?["layers"] as? [[String: Any]] else {
            Issue.record("inspect \(name): \(out)")
            return []
        }
        return layers.compactMap { $0["directory"] as? String }
    }

    /// The `lowerdir=` value for an overlay of the image (top layer first).
    func lowerdir(_ name: String) -> String { layers(name).reversed().joined(separator: ":") }

    /// A listing (type, mode, owner, link count, name) of `paths` inside an
    /// overlay of the image, mounted inside `nook unshare` with kernel
    /// overlayfs (`userxattr`) or fuse-overlayfs. The script runs in the
    /// mount's root.
    func inOverlay(_ name: String, fuse: Bool, _ script: String) -> Outcome {
        let mnt = "\(ws)/mnt-\(UUID().uuidString.prefix(6))"
        // Without an upper directory overlayfs wants two lower ones at least:
        // an empty one goes at the bottom.
        let lower = lowerdir(name) + ":\(mnt).empty"
        let mount = fuse
            ? "mkdir -p \(mnt).up \(mnt).work && fuse-overlayfs -o lowerdir=\(lower),upperdir=\(mnt).up,workdir=\(mnt).work \(mnt) 2>/dev/null"
            : "mount -t overlay overlay -o userxattr,lowerdir=\(lower) \(mnt)"
        let unmount = fuse ? "fusermount3 -u \(mnt)" : "umount \(mnt)"
        return nook(["unshare", "--", "sh", "-c", "mkdir -p \(mnt) \(mnt).empty && \(mount) && cd \(mnt) && { \(script); }; s=$?; cd /; \(unmount); rm -rf \(mnt).up \(mnt).work \(mnt).empty; exit $s"])
    }
}

/// A shell script as root (the test process itself), for what only root
/// can prepare: file capabilities, device nodes, debootstrap.
func asRoot(_ script: String, timeout: TimeInterval = 60) -> Outcome {
    let id = UUID().uuidString
    let outPath = "/tmp/nook-root-out-\(id)", errPath = "/tmp/nook-root-err-\(id)"
    FileManager.default.createFile(atPath: outPath, contents: nil)
    FileManager.default.createFile(atPath: errPath, contents: nil)
    defer {
        try? FileManager.default.removeItem(atPath: outPath)
        try? FileManager.default.removeItem(atPath: errPath)
    }
    let result = TestSpawn.run("/bin/sh", ["-c", script], environment: ProcessInfo.processInfo.environment,
                               directory: "/", stdin: "/dev/null", stdout: outPath, stderr: errPath, timeout: timeout)
    let read = { (path: String) in (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
    return Outcome(status: result.map { $0.timedOut ? -2 : $0.status } ?? -1, stdout: read(outPath), stderr: read(errPath))
}
