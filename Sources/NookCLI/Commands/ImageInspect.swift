import NookRuntime
import NookSpec
import NookStore
import NookSupport

/// `nook image inspect`: one image's record, as JSON.
enum ImageInspectCommand {
    static let usage = "nook image inspect [OPTIONS] NAME|ID..."
    static let summary = "print images' configuration and layers as JSON"

    static let options: [OptionSpec] = CommonOptions.specs

    static var help: String {
        """
        Usage: \(usage)

        Print, as a JSON array, each image's id, names, platform, configuration
        (entrypoint, cmd, env, working directory, user, exposed ports, labels) and
        layers, lowest first, with the directory each is unpacked in.

        Options:
        \(OptionParser.help(options))
        """
    }

    static func run(_ args: [String]) throws -> Int32 {
        let parsed = try OptionParser.parse(args, options: options, command: "image inspect", stopAtPositional: false)
        if parsed.has("help") {
            writeStdout(help + "\n")
            return 0
        }
        try CommonOptions.apply(parsed, environment: HostProbe.currentEnvironment())
        guard !parsed.positionals.isEmpty else {
            throw UsageFailure("image inspect: name an image", hint: "usage: \(usage)")
        }
        let store = ImageCommand.store()
        var out: [String] = []
        for reference in parsed.positionals { out.append(json(try store.image(reference), indent: "  ")) }
        writeStdout("[" + out.joined(separator: ",") + "\n]\n")
        return 0
    }

    /// The image as a JSON object, keys in a fixed order.
    static func json(_ image: StoredImage, indent: String) -> String {
        let c = image.config
        func strings(_ list: [String]?) -> String {
            guard let list else { return "null" }
            return "[" + list.map(jsonString).joined(separator: ", ") + "]"
        }
        func optional(_ s: String?) -> String { s.map(jsonString) ?? "null" }
        let labels = c.labels.keys.sorted().map { "\(jsonString($0)): \(jsonString(c.labels[$0] ?? ""))" }
        let i2 = indent + "  ", i3 = i2 + "  ", i4 = i3 + "  "
        let layers = image.layers.map { l in
            "\n\(i3){\n\(i4)\"chainID\": \(jsonString(l.chainID.description)),\n\(i4)\"diffID\": "
                + "\(jsonString(l.diffID.description)),\n\(i4)\"directory\": \(jsonString(l.directory)),\n"
                + "\(i4)\"entries\": \(l.entries),\n\(i4)\"size\": \(l.size)\n\(i3)}"
        }
        var fields: [(String, String)] = [
            ("id", jsonString(image.id.description)),
            ("names", strings(image.names)),
            ("manifest", optional(image.manifest?.description)),
            ("platform", jsonString(c.platform)),
            ("runnable", image.platformProblem().map { jsonString("no: " + $0) } ?? "true"),
        ]
        fields += [
            ("config", "{\n\(i3)\"entrypoint\": \(strings(c.entrypoint)),\n\(i3)\"cmd\": \(strings(c.cmd)),\n"
                + "\(i3)\"env\": \(strings(c.env)),\n\(i3)\"workingDir\": \(optional(c.workingDir)),\n"
                + "\(i3)\"user\": \(optional(c.user)),\n\(i3)\"exposedPorts\": \(strings(c.exposedPorts)),\n"
                + "\(i3)\"labels\": {\(labels.joined(separator: ", "))},\n\(i3)\"stopSignal\": \(optional(c.stopSignal))\n\(i2)}"),
            ("layers", "[" + layers.joined(separator: ",") + "\n\(i2)]"),
            ("size", String(image.size)),
            ("loaded", jsonString(ImageCommand.date(image.loaded))),
            ("source", jsonString(image.source)),
        ]
        return "\n\(indent){\n" + fields.map { "\(i2)\(jsonString($0.0)): \($0.1)" }.joined(separator: ",\n") + "\n\(indent)}"
    }
}
