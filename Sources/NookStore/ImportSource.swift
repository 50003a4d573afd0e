#if canImport(Glibc)
import Glibc
#endif
import NookSpec
import NookSupport

/// Where an import reads its files: an OCI image layout directory, read in
/// place (every file opened beneath it without following symlinks), or an
/// archive (`docker save`, `podman save`, OCI archive) whose members were
/// first copied into the import's own directory.
final class ImportSource {
    enum Kind {
        case directory(fd: Int32)
        /// Member name -> the import's copy of it.
        case staged([String: String])
    }

    /// The path the user gave.
    let label: String
    let kind: Kind

    init(label: String, kind: Kind) {
        self.label = label
        self.kind = kind
    }

    deinit {
        if case .directory(let fd) = kind { close(fd) }
    }

    /// The member's copy in the import's directory (archives only): the
    /// import can read it without copying it again.
    func stagedPath(_ name: String) -> String? {
        if case .staged(let files) = kind { return files[ImportSource.memberName(name)] }
        return nil
    }

    var isStaged: Bool {
        if case .staged = kind { return true }
        return false
    }

    func has(_ name: String) -> Bool {
        switch kind {
        case .directory(let fd):
            let f = FS.openBeneath(fd, ImportSource.memberName(name), O_RDONLY)
            if f >= 0 { close(f) }
            return f >= 0
        case .staged(let files):
            return files[ImportSource.memberName(name)] != nil
        }
    }

    func open(_ name: String) throws(StoreError) -> Int32 {
        let member = ImportSource.memberName(name)
        switch kind {
        case .directory(let dir):
            let fd = FS.openBeneath(dir, member, O_RDONLY | O_NOFOLLOW)
            if fd == -ELOOP || fd == -EXDEV {
                throw .invalidImage(source: label, message: "\(member) is a symlink or leaves the layout; refused")
            }
            guard fd >= 0 else {
                throw fd == -ENOENT ? .invalidImage(source: label, message: "\(member) is missing")
                    : .system(SystemFailure("open", path: "\(label)/\(member)", errno: Errno(-fd)))
            }
            return fd
        case .staged(let files):
            guard let path = files[member] else { throw .invalidImage(source: label, message: "\(member) is missing") }
            let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw .system(SystemFailure("open", path: path)) }
            return fd
        }
    }

    func read(_ name: String, max: Int) throws(StoreError) -> [UInt8] {
        let fd = try open(name)
        defer { close(fd) }
        return try FS.readAll(fd, max: max, path: "\(label)/\(ImportSource.memberName(name))")
    }

    /// `./a//b` -> `a/b`; nil components and `..` resolved lexically.
    static func memberName(_ name: String) -> String {
        var parts: [Substring] = []
        for part in name.split(separator: "/") where part != "." {
            if part == ".." { _ = parts.popLast() } else { parts.append(part) }
        }
        return parts.joined(separator: "/")
    }

    /// An archive is a regular file, or a pipe (`load /dev/stdin`); a device
    /// such as /dev/zero would be read for ever, a socket or a FIFO nothing
    /// writes to would hang the load.
    static func requireArchiveFile(_ path: String, _ mode: mode_t) throws(StoreError) {
        let kind: String
        switch mode & S_IFMT {
        case S_IFREG: return
        case S_IFIFO:
            // A pipe handed over as /dev/stdin or /proc/self/fd/N is a stream
            // someone writes; a FIFO in the file system may have no writer.
            if path.hasPrefix("/dev/") || path.hasPrefix("/proc/") { return }
            kind = "a FIFO"
        case S_IFCHR: kind = "a character device"
        case S_IFBLK: kind = "a block device"
        case S_IFSOCK: kind = "a socket"
        default: kind = "not a regular file"
        }
        throw .unsupported("\(path) is \(kind), not an image",
                           hint: "give an OCI image layout directory, or an archive file (docker save, podman save, "
                               + "an OCI archive)")
    }

    /// Copies an archive's members into `directory` (as `member-N`), reading
    /// it once; symlink and hard link members become aliases (docker save
    /// links a repeated layer.tar to its first copy).
    static func stage(archive path: String, into directory: String, limits: LayerLimits) throws(StoreError) -> ImportSource {
        // Non-blocking while opened (a FIFO with no writer would block
        // here), and checked again as opened.
        let fd: Int32
        do { fd = try FS.open(path, O_RDONLY | O_NONBLOCK) } catch { throw .system(error) }
        defer { close(fd) }
        var sb = stat()
        guard fstat(fd, &sb) == 0 else { throw .system(SystemFailure("read the image", path: path)) }
        try requireArchiveFile(path, sb.st_mode)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        let stream: TarStream
        let cap = limits.maxLayerBytes.multipliedReportingOverflow(by: 8)
        let maxArchive = cap.overflow ? UInt64.max : cap.partialValue
        do {
            stream = try TarStream(fd: fd, maxTarBytes: maxArchive)
        } catch {
            throw archiveFailure(error, path: path, max: maxArchive)
        }
        var files: [String: String] = [:]
        var aliases: [(String, String)] = []
        var count = 0
        while true {
            let next: TarEntry?
            do { next = try stream.next() } catch { throw archiveFailure(error, path: path, max: maxArchive) }
            guard let e = next else { break }
            count += 1
            if count > 100_000 {
                throw .limit(layer: nil, what: "the number of members of \(path)", limit: 100_000, option: "--max-entries")
            }
            let name = memberName(e.path)
            if let target = e.hardlink {
                aliases.append((name, memberName(target)))
                continue
            }
            if e.type == UInt32(S_IFLNK), let target = e.symlink {
                let base = FS.split(name).0
                aliases.append((name, memberName(target.hasPrefix("/") ? target : base + "/" + target)))
                continue
            }
            guard e.type == UInt32(S_IFREG) else { continue }
            guard e.size >= 0, UInt64(e.size) <= limits.maxLayerBytes else {
                throw .limit(layer: nil, what: "the size of \(name) in \(path)", limit: limits.maxLayerBytes,
                             option: "--max-layer-bytes")
            }
            let copy = "\(directory)/member-\(count)"
            try write(stream, size: e.size, to: copy, archive: path)
            files[name] = copy
        }
        do { _ = try stream.finish() } catch { throw archiveFailure(error, path: path, max: maxArchive) }
        for (alias, target) in aliases {
            if let file = files[target] { files[alias] = file }
        }
        return ImportSource(label: path, kind: .staged(files))
    }

    private static func write(_ stream: TarStream, size: Int64, to copy: String, archive: String) throws(StoreError) {
        let out: Int32
        do { out = try FS.open(copy, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600, what: "create") } catch {
            throw .system(error)
        }
        defer { close(out) }
        do {
            try stream.forEachBlock { block, offset in
                var done = 0
                while done < block.count {
                    let n = pwrite(out, block.baseAddress! + done, block.count - done, off_t(offset) + off_t(done))
                    if n < 0 && errno == EINTR { continue }
                    if n < 0 { throw SystemFailure("write", path: copy) }
                    done += n
                }
            }
        } catch let error as SystemFailure {
            throw .system(error)
        } catch let error as StreamError {
            throw archiveFailure(error, path: archive, max: 0)
        } catch {
            throw .invalidImage(source: archive, message: "\(error)")
        }
        guard ftruncate(out, off_t(size)) == 0 else { throw .system(SystemFailure("write", path: copy)) }
    }

    static func archiveFailure(_ error: StreamError, path: String, max: UInt64) -> StoreError {
        if error.overLimit {
            return .limit(layer: nil, what: "the decompressed size of \(path) (at most 8 times --max-layer-bytes)",
                          limit: max, option: "--max-layer-bytes")
        }
        if error.errno == ELIBACC { return .unsupported(error.message, hint: nil) }
        return .invalidImage(source: path, message: "not a tar archive nook can read: \(error.message)")
    }
}
