#if canImport(Glibc)
import Glibc
#endif
import CNookSys
import NookSupport

extension StoredImage {
    /// A small file of the image as its root would show it (`etc/passwd`):
    /// looked up through the layers from the top, as overlayfs does, with a
    /// whiteout ending the search and an opaque directory hiding the layers
    /// below it. No symlink is followed, inside a layer or out of it: a
    /// link there gives nil, as does anything larger than `max` bytes.
    public func readFile(_ relative: String, max: Int = 1 << 20) -> [UInt8]? {
        let parts = relative.split(separator: "/").map(String.init)
        guard !parts.isEmpty, !parts.contains(".."), !parts.contains(".") else { return nil }
        for layer in layers.map(\.directory).reversed() {
            let dirFD = open(layer, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard dirFD >= 0 else { return nil }
            defer { close(dirFD) }
            var opaqueAbove = false
            var path = ""
            var deleted = false
            for (i, part) in parts.enumerated() {
                path += (path.isEmpty ? "" : "/") + part
                var sb = stat()
                guard fstatat(dirFD, path, &sb, AT_SYMLINK_NOFOLLOW) == 0 else { break }
                let type = sb.st_mode & S_IFMT
                if type == S_IFCHR && sb.st_rdev == 0 { deleted = true; break }  // whiteout
                if i < parts.count - 1 {
                    guard type == S_IFDIR else { return nil }
                    var flag = [UInt8](repeating: 0, count: 2)
                    let fd = nook_openat2(dirFD, path, UInt64(O_RDONLY | O_DIRECTORY | O_CLOEXEC), 0,
                                          UInt64(NOOK_RESOLVE_BENEATH | NOOK_RESOLVE_NO_SYMLINKS))
                    if fd >= 0 {
                        let n = nook_fgetxattr(fd, "user.overlay.opaque", &flag, flag.count)
                        if n == 1 && flag[0] == UInt8(ascii: "y") { opaqueAbove = true }
                        close(fd)
                    }
                    continue
                }
                guard type == S_IFREG, Int(sb.st_size) <= max else { return nil }
                let fd = nook_openat2(dirFD, path, UInt64(O_RDONLY | O_CLOEXEC), 0,
                                      UInt64(NOOK_RESOLVE_BENEATH | NOOK_RESOLVE_NO_SYMLINKS))
                guard fd >= 0 else { return nil }
                defer { close(fd) }
                var bytes = [UInt8](repeating: 0, count: Int(sb.st_size))
                let n = pread(fd, &bytes, bytes.count, 0)
                return n == bytes.count ? bytes : nil
            }
            if deleted || opaqueAbove { return nil }
        }
        return nil
    }
}
