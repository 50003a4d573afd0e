#if canImport(Glibc)
import Glibc
#endif
import NookRuntime
import NookSpec
import NookStore
import NookSupport

/// `nook image`: the image store's commands, one file each.
enum ImageCommand {
    static let summary = "load, save, list, inspect and remove images"

    static let subcommands: [(name: String, summary: String, run: @Sendable ([String]) throws -> Int32)] = [
        ("load", ImageLoadCommand.summary, ImageLoadCommand.run),
        ("save", ImageSaveCommand.summary, ImageSaveCommand.run),
        ("ls", ImageListCommand.summary, ImageListCommand.run),
        ("inspect", ImageInspectCommand.summary, ImageInspectCommand.run),
        ("rm", ImageRemoveCommand.summary, ImageRemoveCommand.run),
        ("prune", ImagePruneCommand.summary, ImagePruneCommand.run),
    ]

    static var help: String {
        let list = subcommands.map { "  \($0.name.padding(9))\($0.summary)" }.joined(separator: "\n")
        return """
        Usage: nook image COMMAND [OPTIONS]

        Images live in $XDG_DATA_HOME/nook/store (~/.local/share/nook/store): each
        layer unpacked once, with its files owned by your subordinate ids, and shared
        by every image built on it.

        Commands:
        \(list)

        Run 'nook image COMMAND --help' for a command's options. See nook-image(1).
        """
    }

    static func run(_ args: [String]) throws -> Int32 {
        guard let name = args.first else {
            writeStderr(help + "\n")
            return 125
        }
        if name == "-h" || name == "--help" || name == "help" {
            writeStdout(help + "\n")
            return 0
        }
        guard let command = subcommands.first(where: { $0.name == name }) else {
            throw UsageFailure("image: unknown command '\(name)'", hint: "see: nook image --help")
        }
        return try command.run(Array(args.dropFirst()))
    }

    /// The user's store.
    static func store() -> ImageStore {
        let environment = HostProbe.currentEnvironment()
        let home = environment["HOME"].flatMap { $0.hasPrefix("/") ? $0 : nil }
            ?? getpwuid(getuid()).map { String(cString: $0.pointee.pw_dir) } ?? "/"
        return ImageStore(root: ImageStore.defaultRoot(environment: environment, home: home))
    }

    /// What the store needs to work on layers: the ids this user can map,
    /// and nook's own helper run as root of a user namespace that maps them.
    static func helperContext() throws -> HelperContext {
        var request = SandboxRequest()
        request.bindWorkspace = false
        let host = try HostProbe.current(for: request)
        func capacity(_ ranges: [IDRange]) -> UInt64 {
            host.idmapUnavailable != nil ? 1 : 1 + ranges.reduce(0) { $0 + UInt64($1.count) }
        }
        let ids = IDCapacity(uids: capacity(host.uidRanges), gids: capacity(host.gidRanges), user: host.userName)
        return HelperContext(capacity: ids) { arguments in
            try Launcher.unshare(["/proc/self/exe", StoreHelper.command] + arguments, host: host).code
        }
    }

    /// "2026-12-04 19:13" in local time.
    static func date(_ seconds: Int64) -> String {
        var t = time_t(seconds)
        var parts = tm()
        localtime_r(&t, &parts)
        var buf = [CChar](repeating: 0, count: 32)
        let n = strftime(&buf, buf.count, "%Y-%m-%d %H:%M", &parts)
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
