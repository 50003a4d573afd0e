import NookStore
import NookRegistry
import NookRuntime
import NookSupport

/// `nook push`: an image of the store to a registry.
enum PushCommand {
    static let usage = "nook push [OPTIONS] IMAGE [DESTINATION]"
    static let summary = "push an image of the store to a registry"

    static let options: [OptionSpec] = [
        OptionSpec("quiet", short: "q", "print only the manifest digest, no progress"),
    ] + RegistryOptions.specs + CommonOptions.specs

    static var help: String {
        """
        Usage: \(usage)

        Push IMAGE (a name or id of the store) to DESTINATION, or to the registry its
        own name gives: [REGISTRY[:PORT]/]REPOSITORY[:TAG]. Blobs the registry has are
        not sent again; the manifest goes last. An image keeps its manifest (and so its
        digest) when the store has it; otherwise nook writes an OCI manifest for it.
        Credentials as for nook pull (nook login).

        Options:
        \(OptionParser.help(options))

        See nook-pull(1).
        """
    }

    static func run(_ args: [String]) throws -> Int32 {
        let parsed = try OptionParser.parse(args, options: options, command: "push", stopAtPositional: false)
        if parsed.has("help") {
            writeStdout(help + "\n")
            return 0
        }
        try CommonOptions.apply(parsed, environment: HostProbe.currentEnvironment())
        guard (1...2).contains(parsed.positionals.count) else {
            throw UsageFailure("push: name an image, and optionally where to push it", hint: "usage: \(usage)")
        }
        let environment = try RegistryOptions.environment(parsed, needsHelper: false)
        let progress = TransferProgress(mode: RegistryOptions.progressMode(parsed), verb: "uploading")
        let result = try Pusher.push(parsed.positionals[0], to: parsed.positionals.count == 2 ? parsed.positionals[1] : nil,
                                     tlsCA: try RegistryOptions.tlsCA(parsed), environment: environment, progress: progress)
        if parsed.has("quiet") {
            writeStdout(result.manifest.description + "\n")
        } else {
            writeStdout("Pushed \(result.reference) (\(result.manifest)): \(result.uploaded) blob\(result.uploaded == 1 ? "" : "s") "
                + "uploaded, \(result.skipped) already there\n")
        }
        return 0
    }
}

/// `nook image save`: an image of the store as an OCI layout or a
/// docker-archive, which nook image load (and podman, docker, skopeo) read.
enum ImageSaveCommand {
    static let usage = "nook image save [OPTIONS] IMAGE PATH"
    static let summary = "write an image as an OCI layout directory or a docker-archive"

    static let options: [OptionSpec] = [
        OptionSpec("format", value: "FORMAT", "oci (default: an OCI image layout directory) or docker-archive (a tar file)"),
    ] + CommonOptions.specs

    static var help: String {
        """
        Usage: \(usage)

        Write IMAGE to PATH, which must not exist: its manifest (the one it came with,
        when the store kept it), config and layer blobs as the store keeps them. nook
        image load, podman load, docker load and skopeo read both formats.

        Options:
        \(OptionParser.help(options))
        """
    }

    static func run(_ args: [String]) throws -> Int32 {
        let parsed = try OptionParser.parse(args, options: options, command: "image save", stopAtPositional: false)
        if parsed.has("help") {
            writeStdout(help + "\n")
            return 0
        }
        try CommonOptions.apply(parsed, environment: HostProbe.currentEnvironment())
        guard parsed.positionals.count == 2 else { throw UsageFailure("image save: give IMAGE and PATH", hint: "usage: \(usage)") }
        // load reads stdin from "-"; save does not write stdout, and a file
        // called "-" is never what was meant (a fresh try).
        if parsed.positionals[1] == "-" {
            throw UsageFailure("image save: - is not a path; save writes a new file or directory",
                               hint: "give a path, as in nook image save \(parsed.positionals[0]) ./image.tar "
                                   + "--format docker-archive")
        }
        let format = try parsed.choice("format", SaveFormat.self) ?? .oci
        try ImageCommand.store().save(parsed.positionals[0], to: RunCommand.absolute(parsed.positionals[1]), format: format)
        writeStdout("Saved \(parsed.positionals[0]) to \(parsed.positionals[1]) (\(format.rawValue))\n")
        return 0
    }
}
