#if canImport(Glibc)
import Glibc
#endif
import CNookSys
import NookSupport

/// What the unpacking helper is asked to do with one layer.
struct UnpackJob: Codable {
    /// The verified blob, inside the store.
    var blob: String
    /// The layer's directory: exists and is empty.
    var destination: String
    /// The image's layers below this one, lowest first.
    var lowers: [String]
    /// The blob's digest, for messages.
    var layer: Digest
    /// The digest the decompressed stream must have.
    var diffID: Digest
    var limits: LayerLimits
    var capacity: IDCapacity
    var remapIDs: Bool
    /// Directories the layer creates without listing them, and links to
    /// files of lower layers, from the pre-scan.
    var implicitDirectories: [PathNeed]
    var externalLinks: [PathNeed]
    /// Where the helper writes its UnpackReport.
    var report: String
    /// The importing nook's pid: the helper dies with it, so that a killed
    /// import leaves nothing that goes on writing.
    var parent: Int32
}

struct PathNeed: Codable, Equatable {
    var path: String
    var entry: String
}

/// What unpacking a layer kept, skipped and changed, for the one warning
/// per kind the user sees.
struct UnpackReport: Codable, Equatable {
    /// Extended attributes that could not be set, by name.
    var xattrsNotKept: [String: Loss] = [:]
    var devices = Loss()
    var sockets = Loss()
    /// Files given the overflow id by --remap-ids.
    var remapped = Loss()
    var entries = 0
    var fileBytes: UInt64 = 0
    /// Set when unpacking failed.
    var failure: Failure?

    /// How many, with the first few names and the first error.
    struct Loss: Codable, Equatable {
        var count = 0
        var examples: [String] = []
        var reason: String?

        mutating func add(_ name: String, reason: String? = nil) {
            count += 1
            if examples.count < 5 { examples.append(name) }
            if self.reason == nil { self.reason = reason }
        }

        var list: String {
            examples.joined(separator: ", ") + (count > examples.count ? " and \(count - examples.count) more" : "")
        }
    }

    /// A failure, carried from the helper to the caller as data.
    struct Failure: Codable, Equatable {
        var hostileEntry: String?
        var reason: String?
        var limitWhat: String?
        var limit: UInt64?
        var option: String?
        var expected: Digest?
        var actual: Digest?
        var message: String?

        init(_ error: StoreError) {
            switch error {
            case .hostileEntry(_, let entry, let reason):
                hostileEntry = entry
                self.reason = reason
            case .limit(_, let what, let limit, let option):
                limitWhat = what
                self.limit = limit
                self.option = option
            case .digestMismatch(_, let expected, let actual):
                self.expected = expected
                self.actual = actual
            default:
                message = error.description
            }
        }

        func error(layer: Digest) -> StoreError {
            if let hostileEntry, let reason { return .hostileEntry(layer: layer, entry: hostileEntry, reason: reason) }
            if let limitWhat, let limit, let option {
                return .limit(layer: layer, what: limitWhat, limit: limit, option: option)
            }
            if let expected, let actual {
                return .digestMismatch(what: "layer \(layer) (its uncompressed content)", expected: expected, actual: actual)
            }
            return .unpack(layer: layer, message: message ?? "failed")
        }
    }
}

/// Creates a layer's entries in its directory, as root of a user namespace
/// that maps the user's ids, so that owners come out mapped.
///
/// Every entry is created relative to a directory descriptor obtained with
/// openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS; nothing is opened by a
/// path string from the archive, no existing file is ever opened for
/// writing (a replaced entry is unlinked first, so a hard link cannot
/// redirect the write), and symlinks are created, never followed.
/// Whiteouts become what overlayfs reads: `.wh.NAME` a 0/0 character device
/// named NAME (mknod of one is allowed without privilege since Linux 5.8),
/// `.wh..wh..opq` the `user.overlay.opaque=y` xattr on its directory.
final class Extractor {
    let job: UnpackJob
    let root: Int32
    let lowers: LowerLayers
    var shape = LayerShape()
    var tally: LayerScan
    var report = UnpackReport()
    /// Directory times, set last: creating entries changes them.
    var directoryTimes: [(path: String, times: [timespec])] = []
    var parent: (path: String, fd: Int32)?

    init(job: UnpackJob) throws(StoreError) {
        self.job = job
        root = Glibc.open(job.destination, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard root >= 0 else { throw .system(SystemFailure("open the layer directory", path: job.destination)) }
        do {
            lowers = try LowerLayers(paths: job.lowers)
        } catch {
            close(root)
            throw error
        }
        tally = LayerScan(totals: StreamTotals(stored: job.layer, storedBytes: 0, tar: job.layer, tarBytes: 0))
    }

    deinit {
        if let parent { close(parent.fd) }
        lowers.closeAll()
        close(root)
    }

    func refuse(_ entry: String, _ reason: String) -> StoreError {
        .hostileEntry(layer: job.layer, entry: entry, reason: reason)
    }

    /// Unpacks the whole layer; returns what was kept and skipped.
    func run() throws(StoreError) -> UnpackReport {
        try checkAgainstLowerLayers()
        let fd = Glibc.open(job.blob, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .system(SystemFailure("open", path: job.blob)) }
        defer { close(fd) }
        let stream: TarStream
        do {
            stream = try TarStream(fd: fd, maxTarBytes: job.limits.maxLayerBytes)
        } catch {
            throw LayerScan.streamFailure(error, layer: job.layer, limits: job.limits)
        }
        while true {
            let next: TarEntry?
            do { next = try stream.next() } catch { throw LayerScan.streamFailure(error, layer: job.layer, limits: job.limits) }
            guard let e = next else { break }
            try unpack(e, from: stream)
        }
        let totals: StreamTotals
        do { totals = try stream.finish() } catch { throw LayerScan.streamFailure(error, layer: job.layer, limits: job.limits) }
        guard totals.tar == job.diffID else {
            throw .digestMismatch(what: "layer \(job.layer)", expected: job.diffID, actual: totals.tar)
        }
        try setDirectoryTimes()
        report.entries = tally.entries
        report.fileBytes = tally.fileBytes
        return report
    }

    /// Cross-layer attacks (CASES C20 b, d): a lower layer's symlink (or
    /// file) where this layer puts a directory it does not list, and hard
    /// links to what no lower layer has. Checked before the first entry.
    func checkAgainstLowerLayers() throws(StoreError) {
        for need in job.implicitDirectories {
            let path = need.path.split(separator: "/").map(String.init)
            switch lowers.lookup(path) {
            case .found(_, let mode) where mode & S_IFMT == S_IFLNK:
                throw refuse(need.entry, "written through the symlink \(need.path) of a lower layer")
            case .found(_, let mode) where mode & S_IFMT != S_IFDIR:
                throw refuse(need.entry, "its parent \(need.path) is a file in a lower layer")
            case .blocked(let prefix, let mode):
                throw refuse(need.entry, mode & S_IFMT == S_IFLNK
                    ? "written through the symlink \(prefix) of a lower layer"
                    : "its parent \(prefix) is a file in a lower layer")
            default:
                break
            }
        }
        for need in job.externalLinks {
            let path = need.path.split(separator: "/").map(String.init)
            switch lowers.lookup(path) {
            case .found(_, let mode) where [S_IFREG, S_IFLNK].contains(mode & S_IFMT):
                break
            case .found:
                throw refuse(need.entry, "a hard link to \(need.path), which is not a file in the layers below")
            case .blocked(let prefix, _):
                throw refuse(need.entry, "a hard link to \(need.path) through \(prefix), which is not a directory")
            case .missing:
                throw refuse(need.entry, "a hard link to \(need.path), which is neither in this layer nor below it")
            }
        }
    }

    func unpack(_ e: TarEntry, from stream: TarStream) throws(StoreError) {
        tally.entries += 1
        if tally.entries > job.limits.maxEntries {
            throw .limit(layer: job.layer, what: "the number of entries", limit: UInt64(job.limits.maxEntries),
                         option: "--max-entries")
        }
        let path: [String]
        let kind: EntryKind
        let inLayer: Bool
        let changes: Bool
        do {
            (path, kind) = try LayerRules.classify(e)
            if case .hardlink(let target) = kind {
                inLayer = shape.nodes[target.joined(separator: "/")] != nil
            } else {
                inLayer = true
            }
            changes = try shape.add(path: path, kind: kind, entry: e.path)
        } catch {
            throw refuse(error.entry, error.reason)
        }
        let capacity = IDCapacity(uids: UInt64.max, gids: UInt64.max, user: "")
        try tally.account(e, kind: kind, layer: job.layer, limits: job.limits, capacity: capacity)
        guard changes else { return }

        let key = path.joined(separator: "/")
        switch kind {
        case .ignored:
            return
        case .device:
            report.devices.add(key)
        case .socket:
            report.sockets.add(key)
        case .opaque:
            _ = try directory(path[...], entry: e.path)
            try setOpaque(key, entry: e.path)
        case .whiteout:
            let dir = try directory(path.dropLast(), entry: e.path)
            guard FS.kind(dir, path.last!) == nil else { return }
            guard mknodat(dir, path.last!, S_IFCHR, 0) == 0 else {
                throw fail("create the whiteout", key, hint: Errno.current == Errno(EPERM)
                    ? "creating whiteouts without privilege needs Linux 5.8" : nil)
            }
        case .directory:
            try makeDirectory(path, e, stream)
        case .file:
            try makeFile(path, e, stream)
        case .hardlink(let target):
            try makeLink(path, to: target, inLayer: inLayer, e)
        case .symlink(let target):
            try makeSymlink(path, target: target, e, stream)
        case .fifo:
            let dir = try directory(path.dropLast(), entry: e.path)
            let name = path.last!
            try clear(dir, name, entry: e.path)
            let (uid, gid) = try owner(e)
            guard mknodat(dir, name, S_IFIFO | 0o600, 0) == 0,
                  fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW) == 0,
                  fchmodat(dir, name, mode_t(e.permissions), 0) == 0 else {
                throw fail("create the FIFO", key)
            }
            var times = self.times(e)
            utimensat(dir, name, &times, AT_SYMLINK_NOFOLLOW)
        }
    }

    // MARK: Entries

    func makeDirectory(_ path: [String], _ e: TarEntry, _ stream: TarStream) throws(StoreError) {
        let key = path.joined(separator: "/")
        let fd: Int32
        if path.isEmpty {
            fd = FS.openBeneath(root, "", O_RDONLY | O_DIRECTORY)
        } else {
            let dir = try directory(path.dropLast(), entry: e.path)
            let name = path.last!
            if mkdirat(dir, name, 0o700) != 0 {
                guard errno == EEXIST else { throw fail("create the directory", key) }
                if let mode = FS.kind(dir, name), mode & S_IFMT != S_IFDIR {
                    try clear(dir, name, entry: e.path)
                    guard mkdirat(dir, name, 0o700) == 0 else { throw fail("create the directory", key) }
                }
            }
            fd = FS.openBeneath(dir, name, O_RDONLY | O_DIRECTORY)
        }
        guard fd >= 0 else { throw fail("open the directory", key, errno: -fd) }
        defer { close(fd) }
        try applyMetadata(fd, key, e, stream)
        if shape.opaqueDirectories.contains(key) { try setOpaque(key, entry: e.path) }
        directoryTimes.append((key, times(e)))
    }

    func makeFile(_ path: [String], _ e: TarEntry, _ stream: TarStream) throws(StoreError) {
        let key = path.joined(separator: "/")
        let dir = try directory(path.dropLast(), entry: e.path)
        let name = path.last!
        try clear(dir, name, entry: e.path)
        let fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw fail("create the file", key) }
        defer { close(fd) }
        let size = UInt64(max(e.size, 0))
        do {
            try stream.forEachBlock { block, offset in
                guard offset >= 0, UInt64(offset) + UInt64(block.count) <= size else {
                    throw self.refuse(e.path, "data beyond the size its header gives")
                }
                var done = 0
                while done < block.count {
                    let n = pwrite(fd, block.baseAddress! + done, block.count - done, off_t(offset) + off_t(done))
                    if n < 0 && errno == EINTR { continue }
                    if n < 0 { throw self.fail("write", key) }
                    done += n
                }
            }
        } catch let error as StoreError {
            throw error
        } catch let error as StreamError {
            throw LayerScan.streamFailure(error, layer: job.layer, limits: job.limits)
        } catch {
            throw .unpack(layer: job.layer, message: "\(key): \(error)")
        }
        // A sparse file's last hole is in no block.
        guard ftruncate(fd, off_t(size)) == 0 else { throw fail("size", key) }
        try applyMetadata(fd, key, e, stream)
        var times = self.times(e)
        futimens(fd, &times)
    }

    func makeLink(_ path: [String], to target: [String], inLayer: Bool, _ e: TarEntry) throws(StoreError) {
        let key = path.joined(separator: "/")
        let targetKey = target.joined(separator: "/")
        let dir = try directory(path.dropLast(), entry: e.path)
        let name = path.last!
        try clear(dir, name, entry: e.path)
        guard inLayer else {
            try copyFromLower(target, to: dir, name, entry: e.path)
            return
        }
        let (targetParent, targetName) = FS.split(targetKey)
        let tdir = FS.openBeneath(root, targetParent, NOOK_O_PATH | O_DIRECTORY)
        guard tdir >= 0 else { throw refuse(e.path, "a hard link to \(targetKey), which cannot be reached") }
        defer { close(tdir) }
        guard linkat(tdir, targetName, dir, name, 0) == 0 else { throw fail("link to \(targetKey) as", key) }
    }

    /// A hard link to a file of a lower layer: layer directories stay
    /// independent of each other, so the file is copied (data, owner, mode,
    /// xattrs, times); the two names then show link count 1, not 2.
    func copyFromLower(_ target: [String], to dir: Int32, _ name: String, entry: String) throws(StoreError) {
        let key = target.joined(separator: "/")
        guard case .found(let layer, let mode) = lowers.lookup(target) else {
            throw refuse(entry, "a hard link to \(key), which is neither in this layer nor below it")
        }
        if mode & S_IFMT == S_IFLNK {
            let (p, n) = FS.split(key)
            let pfd = FS.openBeneath(lowers.fds[layer], p, NOOK_O_PATH | O_DIRECTORY)
            guard pfd >= 0 else { throw fail("open", p, errno: -pfd) }
            defer { close(pfd) }
            var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let len = readlinkat(pfd, n, &buf, buf.count - 1)
            guard len >= 0 else { throw fail("read the symlink", key) }
            var sb = stat()
            fstatat(pfd, n, &sb, AT_SYMLINK_NOFOLLOW)
            guard symlinkat(buf, dir, name) == 0 else { throw fail("copy the symlink", key) }
            fchownat(dir, name, sb.st_uid, sb.st_gid, AT_SYMLINK_NOFOLLOW)
            return
        }
        let src = FS.openBeneath(lowers.fds[layer], key, O_RDONLY | O_NOFOLLOW)
        guard src >= 0 else { throw fail("open", key, errno: -src) }
        defer { close(src) }
        var sb = stat()
        fstat(src, &sb)
        let dst = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard dst >= 0 else { throw fail("create", name) }
        defer { close(dst) }
        var left = Int(sb.st_size)
        while left > 0 {
            let n = nook_copy_file_range(src, dst, left)
            if n == -Int(EINTR) { continue }
            guard n > 0 else { throw fail("copy", key, errno: n < 0 ? Int32(-n) : EIO) }
            left -= n
        }
        guard fchown(dst, sb.st_uid, sb.st_gid) == 0, fchmod(dst, sb.st_mode & 0o7777) == 0 else {
            throw fail("copy the owner of", key)
        }
        var names = [CChar](repeating: 0, count: 65536)
        let length = nook_flistxattr(src, &names, names.count)
        if length > 0 {
            let all = names[0..<Int(length)].split(separator: 0).map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
            // security.capability last, as applyMetadata orders it.
            let ordered = all.filter { $0 != "security.capability" } + all.filter { $0 == "security.capability" }
            for attr in ordered where !LayerRules.isReserved(xattr: attr) {
                var value = [UInt8](repeating: 0, count: 65536)
                let n = nook_fgetxattr(src, attr, &value, value.count)
                if n >= 0 { _ = nook_fsetxattr(dst, attr, value, Int(n)) }
            }
        }
        var times = [sb.st_atim, sb.st_mtim]
        futimens(dst, &times)
    }

    func makeSymlink(_ path: [String], target: String, _ e: TarEntry, _ stream: TarStream) throws(StoreError) {
        let key = path.joined(separator: "/")
        let dir = try directory(path.dropLast(), entry: e.path)
        let name = path.last!
        try clear(dir, name, entry: e.path)
        let (uid, gid) = try owner(e)
        guard symlinkat(target, dir, name) == 0 else { throw fail("create the symlink", key) }
        guard fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW) == 0 else { throw fail("set the owner of", key) }
        if e.xattrCount > 0 {
            // The xattr calls that do not follow a symlink take a path; this
            // one reaches the symlink through the directory's descriptor.
            for (attr, value) in stream.xattrs(count: e.xattrCount) {
                if LayerRules.isReserved(xattr: attr) {
                    report.xattrsNotKept[attr, default: .init()].add(key, reason: "reserved for the overlay")
                    continue
                }
                let rc = nook_lsetxattrat(dir, name, attr, value, value.count)
                if rc != 0 { report.xattrsNotKept[attr, default: .init()].add(key, reason: Errno(-rc).description) }
            }
        }
        var times = self.times(e)
        utimensat(dir, name, &times, AT_SYMLINK_NOFOLLOW)
    }

    // MARK: Metadata

    /// Owner, mode, xattrs and ACLs, in the order the kernel needs: chown
    /// clears setuid bits and file capabilities, so the mode comes after it
    /// and security.capability last. Written by root of a user namespace,
    /// a v2 capability is stored as v3 with that namespace's root
    /// (namespaced file capabilities, Linux 4.14), valid in sandboxes that
    /// map the same root.
    func applyMetadata(_ fd: Int32, _ key: String, _ e: TarEntry, _ stream: TarStream) throws(StoreError) {
        let (uid, gid) = try owner(e)
        guard fchown(fd, uid, gid) == 0 else { throw fail("set the owner of", key) }
        guard fchmod(fd, mode_t(e.permissions)) == 0 else { throw fail("set the mode of", key) }
        var capability: [UInt8]?
        for (name, value) in stream.xattrs(count: e.xattrCount) {
            if LayerRules.isReserved(xattr: name) {
                report.xattrsNotKept[name, default: .init()].add(key, reason: "reserved for the overlay")
            } else if name == "security.capability" {
                capability = value
            } else {
                let rc = nook_fsetxattr(fd, name, value, value.count)
                if rc != 0 { report.xattrsNotKept[name, default: .init()].add(key, reason: Errno(-rc).description) }
            }
        }
        if e.aclCount > 0 {
            for (isDefault, name) in [(false, "system.posix_acl_access"), (true, "system.posix_acl_default")] {
                guard let acl = stream.acl(default: isDefault) else { continue }
                let rc = nook_fsetxattr(fd, name, acl, acl.count)
                if rc != 0 { report.xattrsNotKept[name, default: .init()].add(key, reason: Errno(-rc).description) }
            }
        }
        if let capability {
            let rc = nook_fsetxattr(fd, "security.capability", capability, capability.count)
            if rc != 0 {
                report.xattrsNotKept["security.capability", default: .init()].add(key, reason: Errno(-rc).description)
            }
        }
    }

    /// The entry's owner as this namespace sees it; owners beyond the
    /// mapped ids go to the overflow id with --remap-ids. The pre-scan has
    /// refused them otherwise, so meeting one here means the blob changed.
    func owner(_ e: TarEntry) throws(StoreError) -> (uid_t, gid_t) {
        var uid = e.uid, gid = e.gid
        let outsideUID = uid < 0 || UInt64(uid) >= job.capacity.uids
        let outsideGID = gid < 0 || UInt64(gid) >= job.capacity.gids
        if outsideUID || outsideGID {
            guard job.remapIDs else { throw refuse(e.path, "owned by \(uid):\(gid), outside the mapped ids") }
            if outsideUID { uid = Int64(job.capacity.remapUID) }
            if outsideGID { gid = Int64(job.capacity.remapGID) }
            report.remapped.add("\(e.path) (\(e.uid):\(e.gid))")
        }
        return (uid_t(uid), gid_t(gid))
    }

    func times(_ e: TarEntry) -> [timespec] { [e.atime ?? e.mtime, e.mtime] }

    func setOpaque(_ key: String, entry: String) throws(StoreError) {
        let fd = FS.openBeneath(root, key, O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else { throw fail("open the directory", key, errno: -fd) }
        defer { close(fd) }
        let rc = nook_fsetxattr(fd, LayerRules.opaqueXattr, "y", 1)
        guard rc == 0 else {
            throw fail("mark the directory opaque (\(LayerRules.opaqueXattr))", key, errno: -rc,
                       hint: "the store's file system must support user extended attributes")
        }
    }

    func setDirectoryTimes() throws(StoreError) {
        for (key, times) in directoryTimes.reversed() {
            let fd = FS.openBeneath(root, key, O_RDONLY | O_DIRECTORY)
            guard fd >= 0 else { continue }
            var t = times
            futimens(fd, &t)
            close(fd)
        }
    }

    // MARK: Directories

    /// The directory at `path` inside the layer (NOOK_O_PATH), created with its
    /// missing parents (root-owned, 0755, as image tools create them) when
    /// the layer does not list it. A whiteout in the way becomes an opaque
    /// directory. The descriptor belongs to the extractor.
    func directory(_ path: ArraySlice<String>, entry: String) throws(StoreError) -> Int32 {
        let key = path.joined(separator: "/")
        if let parent, parent.path == key { return parent.fd }
        var fd = FS.openBeneath(root, key, NOOK_O_PATH | O_DIRECTORY)
        if fd == -ENOENT || fd == -ENOTDIR {
            fd = try walkCreating(Array(path), entry: entry)
        } else if fd == -ELOOP || fd == -EXDEV {
            throw refuse(entry, "its parent \(key) passes through a symlink")
        } else if fd < 0 {
            throw fail("open the directory", key, errno: -fd)
        }
        if let parent { close(parent.fd) }
        parent = (key, fd)
        return fd
    }

    private func walkCreating(_ path: [String], entry: String) throws(StoreError) -> Int32 {
        var current = dup(root)
        var sofar = ""
        for part in path {
            sofar = sofar.isEmpty ? part : sofar + "/" + part
            var next = FS.openBeneath(current, part, NOOK_O_PATH | O_DIRECTORY)
            if next == -ENOENT || next == -ENOTDIR {
                var replaced = false
                if next == -ENOTDIR {
                    var sb = stat()
                    guard fstatat(current, part, &sb, AT_SYMLINK_NOFOLLOW) == 0, LowerLayers.isWhiteout(sb) else {
                        close(current)
                        throw refuse(entry, "its parent \(sofar) is not a directory")
                    }
                    unlinkat(current, part, 0)
                    replaced = true
                }
                if mkdirat(current, part, 0o755) != 0 && errno != EEXIST {
                    let failure = fail("create the directory", sofar)
                    close(current)
                    throw failure
                }
                next = FS.openBeneath(current, part, NOOK_O_PATH | O_DIRECTORY)
                if replaced && next >= 0 { try setOpaque(sofar, entry: entry) }
            }
            close(current)
            if next == -ELOOP { throw refuse(entry, "its parent \(sofar) is a symlink") }
            guard next >= 0 else { throw fail("open the directory", sofar, errno: -next) }
            current = next
        }
        return current
    }

    /// Removes what an earlier entry of this layer left at `name` (tar's
    /// "last entry wins"), never a directory.
    func clear(_ dir: Int32, _ name: String, entry: String) throws(StoreError) {
        guard let mode = FS.kind(dir, name) else { return }
        if mode & S_IFMT == S_IFDIR { throw refuse(entry, "replaces a directory") }
        guard unlinkat(dir, name, 0) == 0 else { throw fail("replace", name) }
    }

    func fail(_ operation: String, _ path: String, errno code: Int32 = errno, hint: String? = nil) -> StoreError {
        .system(SystemFailure(operation, path: "\(path.isEmpty ? "/" : path) in layer \(job.layer.short)",
                              errno: Errno(code), hint: hint))
    }
}
