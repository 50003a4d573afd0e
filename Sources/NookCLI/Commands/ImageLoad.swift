import NookRuntime
import NookStore
import NookSupport

/// `nook image load`: an OCI image layout or a `docker save` archive into
/// the store.
enum ImageLoadCommand {
    static let usage = "nook image load [OPTIONS] PATH"
    static let summary = "load an OCI image layout directory or a docker/podman save archive"

    static let options: [OptionSpec] = [
        OptionSpec("tag", value: "NAME", repeatable: true, "name the image NAME (as well as the names it carries); repeatable"),
        OptionSpec("remap-ids", "give files owned by ids you cannot map to nobody (65534) instead of refusing the image"),
        OptionSpec("max-layer-bytes", value: "SIZE", "refuse a layer that expands past SIZE (default 32G; k, M, G, T)"),
        OptionSpec("max-entries", value: "N", "refuse a layer with more than N entries (default 1000000)"),
        OptionSpec("max-entry-bytes", value: "SIZE", "refuse a layer with a file larger than SIZE (default 16G)"),
        OptionSpec("quiet", short: "q", "print only the ids of the loaded images"),
    ] + CommonOptions.specs

    static var help: String {
        """
        Usage: \(usage)

        Load the images of PATH into your image store: an OCI image layout directory
        (index.json, blobs/), or a tar archive from docker save, podman save or
        skopeo (docker-archive or OCI archive, optionally compressed). Every blob is
        checked against its digest and every layer against its diffID, and every
        entry of every layer is checked (names, links, owners, sizes) before anything
        is extracted; a refused image leaves nothing behind. Names come from the
        archive's tags or the layout's ref.name annotations.

        Options:
        \(OptionParser.help(options))
        """
    }

    static func run(_ args: [String]) throws -> Int32 {
        let parsed = try OptionParser.parse(args, options: options, command: "image load", stopAtPositional: false)
        if parsed.has("help") {
            writeStdout(help + "\n")
            return 0
        }
        try CommonOptions.apply(parsed, environment: HostProbe.currentEnvironment())
        guard parsed.positionals.count == 1, let path = parsed.positionals.first else {
            throw UsageFailure("image load: give one PATH", hint: "usage: \(usage)")
        }
        let load = try loadOptions(parsed)
        let context = try ImageCommand.helperContext()
        let result = try ImageCommand.store().load(path, options: load, context: context)
        for warning in result.warnings { Log.warning(warning) }
        for image in result.images {
            if parsed.has("quiet") {
                writeStdout(image.id.description + "\n")
                continue
            }
            let names = image.names.isEmpty ? "untagged, use its id or load with --tag" : image.names.joined(separator: ", ")
            var line = "Loaded image \(image.id.short) (\(names))"
            if let problem = image.platformProblem() { line += ": \(problem); it cannot run here" }
            writeStdout(line + "\n")
        }
        return 0
    }

    static func loadOptions(_ parsed: ParsedOptions) throws(UsageFailure) -> LoadOptions {
        var load = LoadOptions()
        for tag in parsed.all("tag") {
            guard let name = ImageName.loadable(tag) else {
                if ImageName.normalize(tag) != nil {
                    throw UsageFailure("--tag \(tag): a name with a digest is kept only from a pull, which checks it",
                                       hint: "tag it without the @sha256:... part")
                }
                throw UsageFailure("--tag \(tag): not a valid image name",
                                   hint: "lowercase letters, digits and . _ - in path parts, as in localhost/app:1")
            }
            load.tags.append(name)
        }
        load.remapIDs = parsed.has("remap-ids")
        func size(_ option: String) throws(UsageFailure) -> UInt64? {
            guard let text = parsed.value(option) else { return nil }
            guard let value = Size.parse(text), value > 0 else {
                throw UsageFailure("--\(option) \(text): not a size", hint: "a number with an optional k, M, G or T")
            }
            return value
        }
        if let v = try size("max-layer-bytes") { load.limits.maxLayerBytes = v }
        if let v = try size("max-entry-bytes") { load.limits.maxEntryBytes = v }
        if let text = parsed.value("max-entries") {
            guard let n = Int(text), n > 0 else { throw UsageFailure("--max-entries \(text): not a positive number") }
            load.limits.maxEntries = n
        }
        return load
    }
}
