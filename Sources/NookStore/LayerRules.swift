#if canImport(Glibc)
import Glibc
#endif

// What a layer entry means and which layers nook refuses: OCI image-spec
// layer.md ("Whiteouts", "Opaque Whiteout", "Hardlinks") plus the attacks of
// CASES C20 (names and links that leave the layer) and C40 (bombs).

/// Caps on what one layer may expand to, enforced while streaming
/// (CASES C40): a tiny compressed layer may otherwise fill the disk or the
/// inode table.
public struct LayerLimits: Equatable, Sendable, Codable {
    /// Decompressed bytes of the layer's tar stream, and of its files'
    /// sizes together (a sparse file counts at its full size).
    public var maxLayerBytes: UInt64
    /// Entries in one layer.
    public var maxEntries: Int
    /// Size of one file.
    public var maxEntryBytes: UInt64

    public init(maxLayerBytes: UInt64 = 32 << 30, maxEntries: Int = 1_000_000, maxEntryBytes: UInt64 = 16 << 30) {
        self.maxLayerBytes = maxLayerBytes
        self.maxEntries = maxEntries
        self.maxEntryBytes = maxEntryBytes
    }
}

/// What an entry asks to be created.
enum EntryKind: Equatable {
    case directory
    case file
    /// A hard link to the entry at this path (components, inside the layer).
    case hardlink([String])
    case symlink(String)
    case fifo
    /// A character or block device: rootless cannot make one.
    case device
    case socket
    /// `.wh.NAME` (or a 0/0 character device, overlay's own form): NAME is
    /// deleted from the layers below.
    case whiteout
    /// `.wh..wh..opq`: the directory hides everything the layers below have in it.
    case opaque
    /// Other `.wh..wh.` names (aufs bookkeeping): nothing to create.
    case ignored
}

/// A reason to refuse an entry, without the layer (the caller adds it).
struct EntryRefusal: Error, Equatable {
    var entry: String
    var reason: String
}

enum LayerRules {
    static let opaqueMarker = ".wh..wh..opq"
    static let whiteoutPrefix = ".wh."
    /// The xattr overlayfs reads, mounted with `userxattr` in a user
    /// namespace (Linux 5.11), and fuse-overlayfs reads as well.
    static let opaqueXattr = "user.overlay.opaque"

    /// Extended attributes a layer may not set: they steer the overlay
    /// (redirects, metacopy, origin, opacity) or fuse-overlayfs' and
    /// containers/storage's bookkeeping, which would let a layer change what
    /// other layers show.
    static func isReserved(xattr name: String) -> Bool {
        ["trusted.overlay.", "user.overlay.", "user.fuseoverlayfs.", "user.containers."].contains { name.hasPrefix($0) }
    }

    /// The components of an entry name inside the layer: `./a//b/` is
    /// ["a", "b"], `.` is []. Absolute names and any `..` are refused, not
    /// confined: no tool that builds layers writes them.
    static func components(_ name: String, entry: String, link: Bool = false) throws(EntryRefusal) -> [String] {
        let what = link ? "a hard link to '\(name)', " : "a name "
        if name.hasPrefix("/") {
            throw EntryRefusal(entry: entry, reason: link ? "\(what)an absolute path" : "an absolute name")
        }
        var parts: [String] = []
        for part in name.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." { throw EntryRefusal(entry: entry, reason: "\(what)with '..', which leaves the layer") }
            if part.utf8.count > Int(NAME_MAX) {
                throw EntryRefusal(entry: entry, reason: "a name component longer than \(NAME_MAX) bytes")
            }
            parts.append(String(part))
        }
        if parts.joined(separator: "/").utf8.count >= Int(PATH_MAX) {
            throw EntryRefusal(entry: entry, reason: "a name longer than \(PATH_MAX) bytes")
        }
        return parts
    }

    /// Where an entry goes and what it is. For a whiteout the components
    /// name the deleted entry; for an opaque marker, its directory.
    static func classify(_ e: TarEntry) throws(EntryRefusal) -> (path: [String], kind: EntryKind) {
        var path = try components(e.path, entry: e.path)
        for part in path.dropLast() where part.hasPrefix(whiteoutPrefix) {
            throw EntryRefusal(entry: e.path, reason: "a whiteout name used as a directory")
        }
        if let last = path.last, last.hasPrefix(whiteoutPrefix) {
            path.removeLast()
            if last == opaqueMarker { return (path, .opaque) }
            if last.hasPrefix(whiteoutPrefix + whiteoutPrefix) { return (path, .ignored) }
            let hidden = String(last.dropFirst(whiteoutPrefix.count))
            if hidden.isEmpty || hidden == "." || hidden == ".." {
                throw EntryRefusal(entry: e.path, reason: "a whiteout that names nothing")
            }
            path.append(hidden)
            return (path, .whiteout)
        }
        if let target = e.hardlink {
            let to = try components(target, entry: e.path, link: true)
            if to.isEmpty { throw EntryRefusal(entry: e.path, reason: "a hard link to the layer's root") }
            if to == path { throw EntryRefusal(entry: e.path, reason: "a hard link to itself") }
            return (path, .hardlink(to))
        }
        let kind: EntryKind
        switch e.type {
        case UInt32(S_IFDIR): kind = .directory
        case UInt32(S_IFREG): kind = .file
        case UInt32(S_IFLNK):
            guard let target = e.symlink, !target.isEmpty else {
                throw EntryRefusal(entry: e.path, reason: "a symlink without a target")
            }
            kind = .symlink(target)
        case UInt32(S_IFIFO): kind = .fifo
        case UInt32(S_IFCHR) where e.rdevMajor == 0 && e.rdevMinor == 0: kind = .whiteout
        case UInt32(S_IFCHR), UInt32(S_IFBLK): kind = .device
        case UInt32(S_IFSOCK): kind = .socket
        default: throw EntryRefusal(entry: e.path, reason: "an entry of unknown type \(String(e.type, radix: 8))")
        }
        if path.isEmpty && kind != .directory {
            throw EntryRefusal(entry: e.path, reason: "the layer's root as something other than a directory")
        }
        return (path, kind)
    }
}

/// The shape of one layer as its entries arrive: what each path is, so that
/// an entry written through an earlier symlink, a link to something the
/// layer does not have, or a name reused as another type is refused before
/// anything is created (CASES C20). Both the pre-scan and the extractor feed
/// every entry through it.
struct LayerShape {
    enum Node: Equatable {
        /// A directory this layer needs for its entries but never listed.
        case implicitDirectory
        case directory
        case regular
        case symlink
        case fifo
        case whiteout
        /// A device node, which is not created: links to it are skipped too.
        case skipped
    }

    private(set) var nodes: [String: Node] = [:]
    /// Directories that replace a whiteout of this layer and must therefore
    /// be opaque to keep the lower layers' content hidden.
    private(set) var opaqueDirectories: Set<String> = []
    /// Paths of lower layers this layer hard-links to, with the entry.
    private(set) var externalLinks: [(target: String, entry: String)] = []
    /// The first entry that needed each implicit directory.
    private var implicitBy: [String: String] = [:]

    /// Directories this layer creates without listing them, with the entry
    /// that needed each: a lower layer must not have a symlink or a file
    /// there.
    var implicitDirectories: [(path: String, entry: String)] {
        nodes.filter { $0.value == .implicitDirectory }.keys.sorted().map { ($0, implicitBy[$0] ?? $0) }
    }

    /// Records an entry; throws when it must be refused. Returns false when
    /// the entry changes nothing (a whiteout of something this layer itself
    /// created: image-spec says whiteouts apply only to lower layers).
    mutating func add(path: [String], kind: EntryKind, entry: String) throws(EntryRefusal) -> Bool {
        if kind == .ignored { return true }
        let directoryPath = kind == .opaque ? path : Array(path.dropLast())
        var key = ""
        for part in directoryPath {
            key = key.isEmpty ? part : key + "/" + part
            switch nodes[key] {
            case nil:
                nodes[key] = .implicitDirectory
                implicitBy[key] = entry
            case .implicitDirectory, .directory:
                break
            case .whiteout:
                nodes[key] = .directory
                opaqueDirectories.insert(key)
            case .symlink:
                throw EntryRefusal(entry: entry, reason: "written through the symlink \(key) of the same layer")
            default:
                throw EntryRefusal(entry: entry, reason: "its parent \(key) is not a directory")
            }
        }
        if kind == .opaque || path.isEmpty { return true }
        let name = path.joined(separator: "/")
        let new: Node
        switch kind {
        case .directory: new = .directory
        case .file: new = .regular
        case .hardlink(let target):
            let to = target.joined(separator: "/")
            switch nodes[to] {
            case .regular, .symlink, .fifo: break
            case .skipped: return false
            case nil: externalLinks.append((to, entry))
            case .directory, .implicitDirectory:
                throw EntryRefusal(entry: entry, reason: "a hard link to the directory \(to)")
            case .whiteout:
                throw EntryRefusal(entry: entry, reason: "a hard link to \(to), which this layer deletes")
            }
            new = .regular
        case .symlink: new = .symlink
        case .fifo: new = .fifo
        case .whiteout: new = .whiteout
        case .device, .socket:
            if nodes[name] == nil { nodes[name] = .skipped }
            return true
        case .ignored, .opaque: return true
        }
        guard let old = nodes[name] else {
            nodes[name] = new
            return true
        }
        switch (old, new) {
        case (.whiteout, _), (.skipped, _):
            nodes[name] = new
            if new == .directory { opaqueDirectories.insert(name) }
            return true
        case (_, .whiteout):
            return false
        case (.implicitDirectory, .directory), (.directory, .directory):
            nodes[name] = .directory
            return true
        case (.regular, .regular), (.symlink, .symlink), (.fifo, .fifo):
            return true
        default:
            throw EntryRefusal(entry: entry, reason: "replaces the \(describe(old)) \(name), listed earlier in the "
                + "same layer, with a \(describe(new))")
        }
    }

    private func describe(_ node: Node) -> String {
        switch node {
        case .implicitDirectory, .directory: "directory"
        case .regular: "file"
        case .symlink: "symlink"
        case .fifo: "FIFO"
        case .whiteout: "whiteout"
        case .skipped: "device"
        }
    }
}
