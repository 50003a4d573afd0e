import FoundationEssentials
import NookRuntime
import NookSpec
import NookState
import NookSupport

/// `nook inspect`: everything nook knows about a detached container.
enum InspectCommand {
    static let usage = "nook inspect [OPTIONS] CONTAINER..."
    static let summary = "show a detached container's state, spec, cgroup and mounts as JSON"

    static let options: [OptionSpec] = CommonOptions.specs

    static var help: String {
        """
        Usage: \(usage)

        Print, as a JSON array with one object per container: its state (status,
        pids, times, exit code and reason, restarts, health with the last checks),
        how its root is made (root kind, image, writable layer: native, fuse or
        none, and where), its cgroup and scope, its mounts, the resolved OCI spec,
        and where its log is.

        Options:
        \(OptionParser.help(options))
        """
    }

    struct Document: Encodable {
        var id: String
        var name: String
        var state: ContainerRecord
        var root: Root
        var cgroup: String?
        var scope: String?
        /// systemd, cgroupfs or none: what the last start used.
        var cgroupManager: String?
        var mounts: [Mount]
        var log: String
        var spec: Spec?

        struct Root: Encodable {
            var kind: String
            var image: String?
            var path: String?
            /// `native`, `fuse` or `none`.
            var overlay: String?
            /// `tmpfs` (in memory) or the persistent layer's name.
            var writableLayer: String?
            var readOnly: Bool
        }
    }

    static func run(_ args: [String]) throws -> Int32 {
        guard let parsed = try Containers.parse(args, options: options, command: "inspect", help: help) else { return 0 }
        guard !parsed.positionals.isEmpty else { throw UsageFailure("inspect: name a container", hint: usage) }
        let store = try Containers.store()
        var documents: [Document] = []
        for reference in parsed.positionals {
            let record = try Containers.find(reference, in: store)
            let spec = (try? store.read(record.id, file: "spec.json")).flatMap {
                try? JSONDecoder().decode(Spec.self, from: Data($0))
            }
            let a = spec?.annotations ?? record.annotations
            let root = Document.Root(kind: a[Annotation.root] ?? "host", image: record.image, path: spec?.root?.path,
                                     overlay: a[Annotation.overlay], writableLayer: a[Annotation.upper],
                                     readOnly: spec?.root?.readonly ?? true)
            documents.append(Document(id: record.id, name: record.name, state: record, root: root,
                                      cgroup: record.cgroup, scope: record.scope,
                                      cgroupManager: record.cgroupManager, mounts: spec?.mounts ?? [],
                                      log: store.directory(of: record.id) + "/log", spec: spec))
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        writeStdout(String(decoding: try encoder.encode(documents), as: UTF8.self) + "\n")
        return 0
    }
}
