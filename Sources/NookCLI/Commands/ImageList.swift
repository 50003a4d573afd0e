import NookRuntime
import NookStore
import NookSupport

/// `nook image ls`: the images in the store.
enum ImageListCommand {
    static let usage = "nook image ls [OPTIONS]"
    static let summary = "list images"

    static let options: [OptionSpec] = [
        OptionSpec("format", value: "FORMAT", "table (default) or json"),
        OptionSpec("quiet", short: "q", "print only the ids"),
    ] + CommonOptions.specs

    static var help: String {
        """
        Usage: \(usage)

        List the images in your store, newest first: names, id, platform (marked
        when it is not this host's and so cannot run here), layers, the size of
        their files, and when they were loaded.

        Options:
        \(OptionParser.help(options))
        """
    }

    static func run(_ args: [String]) throws -> Int32 {
        let parsed = try OptionParser.parse(args, options: options, command: "image ls", stopAtPositional: false)
        if parsed.has("help") {
            writeStdout(help + "\n")
            return 0
        }
        try CommonOptions.apply(parsed, environment: HostProbe.currentEnvironment())
        guard parsed.positionals.isEmpty else { throw UsageFailure("image ls: takes no arguments") }
        let images = try ImageCommand.store().images()
        if parsed.has("quiet") {
            writeStdout(images.map { $0.id.description + "\n" }.joined())
            return 0
        }
        switch parsed.value("format") ?? "table" {
        case "table": writeStdout(table(images))
        case "json": writeStdout("[" + images.map { ImageInspectCommand.json($0, indent: "  ") }.joined(separator: ",") + "\n]\n")
        case let other: throw UsageFailure("--format \(other): unknown format", hint: "use table or json")
        }
        return 0
    }

    static func table(_ images: [StoredImage]) -> String {
        let host = Platform.current
        var rows = [["NAME", "ID", "PLATFORM", "LAYERS", "SIZE", "LOADED"]]
        for image in images {
            let platform = image.config.platform + (image.platformProblem(host: host) != nil ? " (not this host's)" : "")
            let names = image.names.isEmpty ? ["<none>"] : image.names
            for name in names {
                rows.append([name, image.id.short, platform, String(image.layers.count), Size.text(image.size),
                             ImageCommand.date(image.loaded)])
            }
        }
        let widths = rows[0].indices.map { c in rows.map { $0[c].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { c, cell in c == row.count - 1 ? cell : cell.padding(widths[c] + 1) }.joined()
        }.joined(separator: "\n") + "\n"
    }
}
