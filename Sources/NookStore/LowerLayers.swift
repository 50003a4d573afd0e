#if canImport(Glibc)
import Glibc
#endif
import CNookSys

/// The layers below the one being unpacked, looked up the way overlayfs
/// merges them (Documentation/filesystems/overlayfs.rst, "Directories",
/// "whiteouts and opaque directories"): the topmost layer that has a name
/// wins; a whiteout ends the search; a directory merges with the directories
/// below it unless it is opaque; anything else hides what is below.
struct LowerLayers {
    /// Directory descriptors, topmost first.
    let fds: [Int32]

    enum Lookup: Equatable {
        case missing
        /// Found in layer `layer` (index into fds) with this st_mode.
        case found(layer: Int, mode: mode_t)
        /// A proper prefix of the path is not a directory in the merged view.
        case blocked(prefix: String, mode: mode_t)
    }

    /// Opens the layer directories, given lowest first as image configs list
    /// them.
    init(paths lowestFirst: [String]) throws(StoreError) {
        var fds: [Int32] = []
        for path in lowestFirst.reversed() {
            let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard fd >= 0 else {
                fds.forEach { Glibc.close($0) }
                throw .system(.init("open the lower layer", path: path))
            }
            fds.append(fd)
        }
        self.fds = fds
    }

    func closeAll() { fds.forEach { Glibc.close($0) } }

    static func isWhiteout(_ sb: stat) -> Bool {
        sb.st_mode & S_IFMT == S_IFCHR && sb.st_rdev == 0
    }

    func stat(layer: Int, _ path: String) -> stat? {
        let fd = FS.openBeneath(fds[layer], path, NOOK_O_PATH | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var sb = Glibc.stat()
        return fstat(fd, &sb) == 0 ? sb : nil
    }

    func isOpaque(layer: Int, _ path: String) -> Bool {
        let fd = FS.openBeneath(fds[layer], path, O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else { return false }
        defer { Glibc.close(fd) }
        var value = [UInt8](repeating: 0, count: 4)
        let n = nook_fgetxattr(fd, LayerRules.opaqueXattr, &value, value.count)
        return n == 1 && value[0] == UInt8(ascii: "y")
    }

    /// What the merged lower layers show at `path`.
    func lookup(_ path: [String]) -> Lookup {
        var candidates = Array(fds.indices)
        var result = Lookup.missing
        var prefix = ""
        for (depth, part) in path.enumerated() {
            prefix = prefix.isEmpty ? part : prefix + "/" + part
            var found: (layer: Int, mode: mode_t)?
            var below: [Int] = []
            for layer in candidates {
                guard let sb = stat(layer: layer, prefix) else { continue }
                if LowerLayers.isWhiteout(sb) { break }
                let isDirectory = sb.st_mode & S_IFMT == S_IFDIR
                if found == nil { found = (layer, sb.st_mode) }
                guard let top = found, top.mode & S_IFMT == S_IFDIR, isDirectory else { break }
                below.append(layer)
                if isOpaque(layer: layer, prefix) { break }
            }
            guard let top = found else { return .missing }
            if depth < path.count - 1 && top.mode & S_IFMT != S_IFDIR {
                return .blocked(prefix: prefix, mode: top.mode)
            }
            result = .found(layer: top.layer, mode: top.mode)
            candidates = below
        }
        return result
    }
}
