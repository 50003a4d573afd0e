import NookSupport

/// Annotation keys for roots other than the host's.
extension Annotation {
    /// `native`, `fuse` or `none`: how the writable layer is made.
    public static let overlay = "org.nook.overlay"
    /// The lower layers, topmost first, as a JSON array of absolute paths.
    public static let lowerDirs = "org.nook.rootfs.lower"
    /// `tmpfs` (ephemeral, gone with the sandbox) or the persistent layer's name.
    public static let upper = "org.nook.rootfs.upper"
    /// The image's name and id, when the root is an image.
    public static let image = "org.nook.image"
    public static let imageID = "org.nook.image.id"
    /// The image's ExposedPorts, recorded: `80/tcp,53/udp`.
    public static let exposedPorts = "org.nook.image.exposed-ports"
    /// The image's StopSignal, as it gives it (`SIGQUIT`, `15`).
    public static let stopSignal = "org.nook.image.stop-signal"
    /// `keep-id`: the layers' owners are shown shifted back (fuse uidmapping).
    public static let idShift = "org.nook.overlay.idshift"
    /// `fuse` when the overlay was chosen automatically and fuse-overlayfs
    /// may take over if kernel overlayfs fails on this filesystem.
    public static let overlayFallback = "org.nook.overlay.fallback"
    /// `true`: the working directory (the image's WorkingDir) is made when
    /// the root lacks it.
    public static let createWorkdir = "org.nook.workdir.create"
    /// `on` when root emulation answers chown, setuid and setgroups.
    public static let rootEmulation = "org.nook.root-emulation"
}

extension Resolver {
    /// The mounts every root but the host's gets, and the files nook makes
    /// for it. /etc/hosts, /etc/hostname and /etc/resolv.conf are files of
    /// nook's own on the host, bound over the image's (an image is hostile
    /// input: nook never writes through what it ships there).
    static func containerMounts(_ request: SandboxRequest, host: HostContext, hostname: String,
                                resolvConf resolv: String, rootOwned: [String], out: inout Resolution) throws(ResolveError)
        -> [Mount]
    {
        // A root of its own also gets the host's /sys, read-only (no sysfs
        // of its own: that needs a network namespace of its own too).
        var mounts = systemMounts(rootOwned: rootOwned)
        mounts.append(Mount(destination: "/sys", type: "bind", source: "/sys",
                            options: ["rbind", "ro", "nosuid", "nodev", "noexec"]))
        let hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t\(hostname)\n"
        for (name, content) in [("hosts", hosts), ("hostname", hostname + "\n"), ("resolv.conf", resolv)] {
            let path = host.sandboxDir + "/" + name
            out.generatedFiles[path] = content
            mounts.append(Mount(destination: "/etc/" + name, type: "bind", source: path,
                                options: ["bind", "rw", "nosuid", "nodev", "noexec"]))
        }
        return mounts
    }

    /// A directory as the root, with a writable layer unless read-only.
    static func directoryRoot(_ request: SandboxRequest, host: HostContext, rootfs: String,
                              out: inout Resolution) throws(ResolveError) -> (Root, [String: String]) {
        let path = try normalized(rootfs, what: "--rootfs")
        guard host.sourceIsDirectory[path] == true else {
            throw ResolveError("--rootfs \(rootfs): not a directory", hint: "give a directory holding a root filesystem")
        }
        let mode = try overlayMode(request, host: host, out: &out)
        if let owner = host.rootfsOwner {
            func mapped(_ id: UInt32, _ maps: [IDMapping]?) -> Bool {
                (maps ?? []).contains { id >= $0.hostID && UInt64(id) < UInt64($0.hostID) + UInt64($0.size) }
            }
            if !mapped(owner.uid, out.spec.linux?.uidMappings) || !mapped(owner.gid, out.spec.linux?.gidMappings) {
                out.warnings.append("\(path) belongs to \(owner.uid):\(owner.gid) on the host, an id outside your "
                    + "mapping: inside, such files show as nobody and cannot be changed or copied into the writable "
                    + "layer (EOVERFLOW). Build the directory under nook's mapping, for example: "
                    + "nook unshare tar -xpf rootfs.tar -C DIR")
            }
        }
        var annotations = [Annotation.root: "directory", Annotation.overlay: mode.rawValue]
        if mode == .native && (request.overlay ?? .auto) == .auto && host.fuseOverlayfs != nil {
            annotations[Annotation.overlayFallback] = "fuse"
        }
        if mode != .none {
            annotations[Annotation.lowerDirs] = "[" + jsonString(path) + "]"
            annotations[Annotation.upper] = request.persist ?? "tmpfs"
        }
        return (Root(path: path, readonly: mode == .none), annotations)
    }

    /// An image's layers as the root, with a writable layer unless read-only.
    /// Its files keep the owners the root mapping gave them when unpacked;
    /// under keep-id they would show shifted, so fuse-overlayfs presents
    /// them as the image has them (uidmapping) instead of nook copying and
    /// re-owning the whole image.
    static func imageRoot(_ request: SandboxRequest, host: HostContext, image: ImageContext, mode userns: UsernsMode,
                          out: inout Resolution) throws(ResolveError) -> (Root, [String: String]) {
        guard let lowest = image.layers.first else {
            throw ResolveError("the image \(image.name) has no layers", hint: "load it again: nook image load")
        }
        var mode = try overlayMode(request, host: host, out: &out)
        // No writable layer (--read-only or --overlay none) is a read-only root.
        let readOnly = request.readOnly == true || request.overlay == OverlayChoice.none
        if readOnly {
            // Read-only still gets an in-memory layer while the sandbox is
            // assembled: images often lack /proc or /dev, and mount points
            // must be made somewhere. The root turns read-only before the
            // command starts.
            var writable = request
            writable.readOnly = nil
            writable.overlay = nil
            var quiet = out
            mode = try overlayMode(writable, host: host, out: &quiet)
        }
        var annotations = [Annotation.root: "image", Annotation.image: image.name, Annotation.imageID: image.id]
        if !image.config.exposedPorts.isEmpty {
            annotations[Annotation.exposedPorts] = image.config.exposedPorts.joined(separator: ",")
        }
        if let signal = image.config.stopSignal, !signal.isEmpty {
            annotations[Annotation.stopSignal] = signal
        }
        for (key, value) in image.config.labels { annotations["org.nook.label." + key] = value }
        if userns == .keepID {
            guard host.fuseOverlayfs != nil else {
                throw ResolveError("--userns keep-id on an image needs fuse-overlayfs, to show the image's owners as the "
                    + "image has them without copying it", hint: "sudo apt install fuse-overlayfs, or run with --userns root")
            }
            if mode != .fuse {
                out.info.append("keep-id on an image: fuse-overlayfs shows the image's owners (uidmapping), no copy")
            }
            mode = .fuse
            annotations[Annotation.idShift] = "keep-id"
        }
        if mode == .none && image.layers.count == 1 {
            annotations[Annotation.overlay] = "none"
            return (Root(path: lowest, readonly: true), annotations)
        }
        // Several layers always need an overlay; with no writable layer on
        // this host, it has no upper (and missing mount points are errors).
        annotations[Annotation.overlay] = mode == .none ? "native" : mode.rawValue
        annotations[Annotation.lowerDirs] = "[" + image.layers.reversed().map(jsonString).joined(separator: ",") + "]"
        annotations[Annotation.upper] = mode == .none ? "none" : request.persist ?? "tmpfs"
        if mode == .native && (request.overlay ?? .auto) == .auto && host.fuseOverlayfs != nil {
            annotations[Annotation.overlayFallback] = "fuse"
        }
        return (Root(path: lowest, readonly: mode == .none || readOnly), annotations)
    }

    /// The longest name `--persist` takes.
    public static let layerNameLimit = 128
    /// What a persistent layer's name may be, for hints.
    public static let layerNameRule = "use ASCII letters, digits, '-', '_' and '.', not starting with '-' or '.'"

    /// Why `name` cannot name a persistent layer, or nil when it can. The
    /// name is a directory under nook's persist directory and what the user
    /// types to get the layer back: ASCII only, so that two names that look
    /// the same (`é` composed or not, `ｆ` and `f`, Arabic-Indic digits) are
    /// never two layers, and not starting with `-` (an option to the tools
    /// that remove it) or `.`.
    public static func layerNameProblem(_ name: String) -> String? {
        guard !name.isEmpty else { return "the layer's name is empty" }
        guard name.utf8.count <= layerNameLimit else {
            return "the name is too long (\(name.utf8.count) bytes; at most \(layerNameLimit))"
        }
        func allowed(_ c: Unicode.Scalar) -> Bool {
            c.isASCII && (("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c)
                || c == "-" || c == "_" || c == ".")
        }
        if let bad = name.unicodeScalars.first(where: { !allowed($0) }) {
            let hex = String(bad.value, radix: 16, uppercase: true)
            let code = "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
            return "'\(bad.escaped(asASCII: false))' (\(code)) is not allowed in a layer's name"
        }
        if let first = name.first, first == "-" || first == "." { return "a layer's name may not start with '\(first)'" }
        return nil
    }

    static func checkLayerName(_ name: String) throws(ResolveError) {
        guard let problem = layerNameProblem(name) else { return }
        let shown = name.unicodeScalars.count > 40 ? String(name.unicodeScalars.prefix(40)) + "..." : name
        throw ResolveError("--persist\(shown.isEmpty ? "" : " " + shown): \(problem)",
                           hint: problem.hasPrefix("the name is too long") ? "choose a shorter name" : layerNameRule)
    }

    /// Which writable layer to use: as asked, or the best this host has.
    static func overlayMode(_ request: SandboxRequest, host: HostContext, out: inout Resolution)
        throws(ResolveError) -> OverlayChoice
    {
        if request.readOnly == true {
            if let asked = request.overlay, asked != .none, asked != .auto {
                throw ResolveError("--read-only and --overlay \(asked.rawValue) contradict each other",
                                   hint: "drop one of them")
            }
            if request.persist != nil {
                throw ResolveError("--read-only and --persist contradict each other", hint: "drop one of them")
            }
            return .none
        }
        if let name = request.persist { try checkLayerName(name) }
        let nativeOK = host.kernel >= (6, 6) || (request.persist != nil && host.kernel >= (5, 11))
        switch request.overlay ?? .auto {
        case .native:
            guard nativeOK else {
                throw ResolveError("--overlay native needs Linux 6.6 for an ephemeral layer (5.11 with --persist); "
                    + "this is \(host.kernel.0).\(host.kernel.1)", hint: "use --overlay fuse (install fuse-overlayfs)")
            }
            return .native
        case .fuse:
            guard host.fuseOverlayfs != nil else {
                // Valid, but this host cannot give it: say so once and use
                // the next best layer rather than refusing to run.
                let fallback: OverlayChoice = nativeOK ? .native : .none
                out.warnings.append("fuse-overlayfs was asked for but is not installed; using "
                    + (fallback == .native ? "kernel overlayfs" : "no writable layer (a read-only root)")
                    + " instead. Fix: sudo apt install fuse-overlayfs")
                return fallback
            }
            return .fuse
        case .none:
            if request.persist != nil {
                throw ResolveError("--overlay none and --persist contradict each other", hint: "drop one of them")
            }
            return .none
        case .auto:
            if nativeOK { return .native }
            if host.fuseOverlayfs != nil { return .fuse }
            out.warnings.append("no writable layer: kernel overlayfs in a user namespace needs Linux 6.6 here, and "
                + "fuse-overlayfs is not installed; the root is read-only. Fix: sudo apt install fuse-overlayfs")
            return .none
        }
    }
}
