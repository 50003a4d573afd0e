// Where `--profile NAME` looks: the user's profiles, the system's, then the
// stock profiles shipped with nook. The first directory holding NAME.toml
// wins, so a user's build.toml overrides the stock build.
#if canImport(Glibc)
    import Glibc
#endif
import NookSupport

/// One directory of the search path.
public struct ProfileDirectory: Equatable, Sendable {
    public enum Kind: String, Sendable {
        case user, system, stock
    }
    public var path: String
    public var kind: Kind
    public init(_ path: String, _ kind: Kind) {
        self.path = path
        self.kind = kind
    }
}

/// The directories searched for profile names, in order.
public struct ProfileSearchPath: Equatable, Sendable {
    public var directories: [ProfileDirectory]

    public init(_ directories: [ProfileDirectory]) { self.directories = directories }

    /// `$XDG_CONFIG_HOME/nook/profiles` (default `~/.config/nook/profiles`),
    /// `/etc/nook/profiles`, `<prefix>/share/nook/profiles` for the prefix
    /// the executable is installed in, and, for a nook that is not
    /// installed (no such directory there), the source tree's Profiles/.
    public static func standard(
        home: String, environment: [String: String],
        executable: String? = Installation.executable()
    ) -> ProfileSearchPath {
        var dirs: [ProfileDirectory] = []
        let config = environment["XDG_CONFIG_HOME"].flatMap { $0.hasPrefix("/") ? $0 : nil } ?? home + "/.config"
        dirs.append(ProfileDirectory(cleanedPath(config + "/nook/profiles"), .user))
        dirs.append(ProfileDirectory("/etc/nook/profiles", .system))
        var installed = false
        if let executable, executable.hasPrefix("/") {
            let share = Installation.stockProfiles(executable: executable)
            installed = isDirectory(share)
            // Only where nobody else could have put profiles: a binary in
            // /tmp/bin would read /tmp/share/nook/profiles (a fresh try
            // planted a "stock" strict there as another user).
            if !installed || isTrusted(share) {
                dirs.append(ProfileDirectory(share, .stock))
            } else {
                Log.warnOnce(key: "untrusted-" + share, "ignoring the stock profiles in \(share): it or a directory "
                    + "above it belongs to another user or can be written by others")
            }
        }
        // An installed nook never reads the checkout it was built from
        // (a directory its builder may go on changing): it showed every
        // stock profile as overriding that checkout's copy.
        if !installed, let tree = sourceTreeProfiles, !dirs.contains(where: { $0.path == tree }) {
            dirs.append(ProfileDirectory(tree, .stock))
        }
        return ProfileSearchPath(dirs)
    }

    /// Profiles/ of the checkout nook was built from, so that a binary run
    /// from the build directory (or a copy of it) finds the stock profiles
    /// without being installed. Absent when the checkout is not there.
    static var sourceTreeProfiles: String? {
        // #filePath is <checkout>/Sources/NookProfile/Search.swift.
        let file = #filePath
        guard file.hasPrefix("/") else { return nil }
        let checkout = directoryOf(directoryOf(directoryOf(file)))
        let path = checkout + "/Profiles"
        return isDirectory(path) ? path : nil
    }

    /// The directory and every one above it belong to root or the caller
    /// and only their owner may change them (a sticky directory such as
    /// /tmp may be writable by all: its entries keep their owners).
    static func isTrusted(_ path: String) -> Bool {
        guard let real = realpath(path, nil) else { return false }
        let resolved = String(cString: real)
        free(real)
        let me = getuid()
        var current = resolved
        var first = true
        while true {
            var sb = stat()
            guard stat(current, &sb) == 0, sb.st_uid == 0 || sb.st_uid == me else { return false }
            let othersWrite = sb.st_mode & 0o022 != 0
            if othersWrite && (first || sb.st_mode & S_ISVTX == 0) { return false }
            if current == "/" { return true }
            current = directoryOf(current)
            first = false
        }
    }

    static func isDirectory(_ path: String) -> Bool {
        var sb = stat()
        return stat(path, &sb) == 0 && (sb.st_mode & S_IFMT) == S_IFDIR
    }

    /// A profile name is a file name without its `.toml`: letters, digits,
    /// `-`, `_` and `.`, not starting with a dot.
    public static func isName(_ reference: String) -> Bool {
        !reference.isEmpty && !reference.hasPrefix(".") && !reference.hasSuffix(".toml")
            && reference.allSatisfy {
                $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".")
            }
    }

    /// Whether a reference names a file rather than a profile.
    public static func isPath(_ reference: String) -> Bool {
        reference.contains("/") || reference.hasSuffix(".toml")
    }

    /// The first file named `name`.toml, skipping `excluding` (a profile
    /// that extends its own name means the next one down the path).
    public func find(_ name: String, excluding: String? = nil, in fs: any ProfileFileSystem) -> String? {
        for dir in directories {
            let path = dir.path + "/" + name + ".toml"
            if let excluding, fs.canonical(path) == excluding { continue }
            if fs.tomlFiles(in: dir.path).contains(name + ".toml") { return path }
        }
        return nil
    }

    /// Every profile name, with the file it resolves to and the files of
    /// the same name it hides.
    public func list(in fs: any ProfileFileSystem) -> [(
        name: String, file: String, kind: ProfileDirectory.Kind,
        shadowed: [String]
    )] {
        var out: [(name: String, file: String, kind: ProfileDirectory.Kind, shadowed: [String])] = []
        for dir in directories {
            for file in fs.tomlFiles(in: dir.path) {
                let name = String(file.dropLast(5))
                let path = dir.path + "/" + file
                if let i = out.firstIndex(where: { $0.name == name }) {
                    out[i].shadowed.append(path)
                } else {
                    out.append((name, path, dir.kind, []))
                }
            }
        }
        return out.sorted { $0.name < $1.name }
    }
}
