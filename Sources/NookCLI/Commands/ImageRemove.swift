import NookRuntime
import NookStore
import NookSupport

/// `nook image rm`: images or names out of the store.
enum ImageRemoveCommand {
    static let usage = "nook image rm [OPTIONS] NAME|ID..."
    static let summary = "remove images (or one of an image's names)"

    static let options: [OptionSpec] = [
        OptionSpec("force", short: "f", "remove an image even while a sandbox uses it (its layers stay until it ends)"),
    ] + CommonOptions.specs

    static var help: String {
        """
        Usage: \(usage)

        Remove each named image. A name removes only that name while the image has
        others; an id, or an image's last name, removes the image and the layers no
        other image uses. An image a running sandbox uses is refused without --force.

        Options:
        \(OptionParser.help(options))
        """
    }

    static func run(_ args: [String]) throws -> Int32 {
        let parsed = try OptionParser.parse(args, options: options, command: "image rm", stopAtPositional: false)
        if parsed.has("help") {
            writeStdout(help + "\n")
            return 0
        }
        try CommonOptions.apply(parsed, environment: HostProbe.currentEnvironment())
        guard !parsed.positionals.isEmpty else { throw UsageFailure("image rm: name an image", hint: "usage: \(usage)") }
        let removals = try ImageCommand.store().remove(parsed.positionals, force: parsed.has("force"),
                                                       context: try ImageCommand.helperContext())
        for removal in removals {
            switch removal {
            case .untagged(let name): writeStdout("Untagged \(name)\n")
            case .removed(let id): writeStdout("Removed \(id)\n")
            }
        }
        return 0
    }
}

/// `nook image prune`: what no image and no sandbox uses.
enum ImagePruneCommand {
    static let usage = "nook image prune [OPTIONS]"
    static let summary = "remove untagged images and layers nothing uses"

    static let options: [OptionSpec] = CommonOptions.specs

    static var help: String {
        """
        Usage: \(usage)

        Remove images without a name that no sandbox uses, then every layer and blob
        no image references and no running sandbox uses, and what interrupted loads
        left behind.

        Options:
        \(OptionParser.help(options))
        """
    }

    static func run(_ args: [String]) throws -> Int32 {
        let parsed = try OptionParser.parse(args, options: options, command: "image prune", stopAtPositional: false)
        if parsed.has("help") {
            writeStdout(help + "\n")
            return 0
        }
        try CommonOptions.apply(parsed, environment: HostProbe.currentEnvironment())
        guard parsed.positionals.isEmpty else { throw UsageFailure("image prune: takes no arguments") }
        let result = try ImageCommand.store().prune(context: try ImageCommand.helperContext())
        for id in result.images { writeStdout("Removed \(id)\n") }
        var line = "Removed \(result.images.count) image\(result.images.count == 1 ? "" : "s"), \(result.layers) "
            + "layer\(result.layers == 1 ? "" : "s") (\(Size.text(result.bytes))), \(result.blobs) blob\(result.blobs == 1 ? "" : "s")"
        if result.leftovers > 0 {
            line += "; removed what \(result.leftovers) interrupted load\(result.leftovers == 1 ? "" : "s") left"
        }
        if result.layersInUse > 0 { line += "; kept \(result.layersInUse) unreferenced layer\(result.layersInUse == 1 ? "" : "s") a sandbox still uses" }
        writeStdout(line + "\n")
        return 0
    }
}
