#if canImport(Glibc)
import Glibc
#endif
import CNookSys
import Foundation
import NookSupport

/// A container's state could not be used: the store's layout or a file in
/// it is not what nook writes, or a lookup failed.
public struct ContainerFailure: NookFailure {
    public let message: String
    public let hint: String?
    public let exitCode: Int32

    public init(_ message: String, hint: String? = nil, exitCode: Int32 = 125) {
        self.message = message
        self.hint = hint
        self.exitCode = exitCode
    }

    public var description: String { message }
}

/// Detached containers on disk, under `$XDG_RUNTIME_DIR/nook/containers`
/// (a tmpfs of the user's, gone at logout, which is right for state about
/// running processes):
///
///     containers/.lock            taken to add or remove a container or name
///     containers/names/NAME       the id a name belongs to
///     containers/ID/state.json    the ContainerRecord, replaced atomically
///     containers/ID/spec.json     the resolved OCI spec (exec, inspect)
///     containers/ID/lock          taken to change state.json
///     containers/ID/log, log.1    what the command printed
///
/// The directory is masked inside every sandbox. Every path is opened
/// relative to a directory descriptor without following symlinks, and
/// every file must be the user's own and not writable by others: a
/// tampered store is refused with the reason, never followed.
public final class ContainerStore: @unchecked Sendable {
    public let path: String
    let rootFD: Int32
    let uid = getuid()

    /// Opens (making it when `create`) the store of the current user.
    public init(environment: [String: String], create: Bool = true) throws(ContainerFailure) {
        let runtime = Self.runtimeDirectory(environment)
        path = runtime + "/nook/containers"
        // Checked whether or not it is made here: a store below a directory
        // someone else controls is never used.
        do {
            try PrivateDirectory.ensure(runtime + "/nook")
        } catch {
            throw ContainerFailure(error.description, hint: error.hint)
        }
        if create {
            for dir in [path] where mkdir(dir, 0o700) != 0 && errno != EEXIST {
                throw ContainerFailure("make the container state directory \(dir): \(Errno.current)",
                                       hint: "XDG_RUNTIME_DIR (\(runtime)) must be a directory of yours")
            }
        }
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            throw ContainerFailure("open the container state directory \(path): \(Errno.current)",
                                   hint: Errno.current.rawValue == ENOENT ? "no container was made yet" : nil)
        }
        rootFD = fd
        var sb = stat()
        guard fstat(fd, &sb) == 0, sb.st_uid == uid, sb.st_mode & 0o022 == 0 else {
            close(fd)
            throw ContainerFailure("\(path) is not a private directory of yours (owner or mode changed)",
                                   hint: "remove it (nook keeps nothing there that outlives a login)")
        }
        for dir in ["names"] where mkdirat(rootFD, dir, 0o700) != 0 && errno != EEXIST {
            throw ContainerFailure("make \(path)/\(dir): \(Errno.current)")
        }
    }

    deinit { close(rootFD) }

    /// `$XDG_RUNTIME_DIR`, or /tmp/nook-UID without one.
    public static func runtimeDirectory(_ environment: [String: String]) -> String {
        environment["XDG_RUNTIME_DIR"].flatMap { $0.hasPrefix("/") ? $0 : nil } ?? "/tmp/nook-\(getuid())"
    }

    // MARK: Names and ids

    static func isID(_ s: String) -> Bool { s.utf8.count == 64 && isLowerHex(s) }

    /// Digits and a-f only (what ids and their prefixes are made of).
    static func isLowerHex(_ s: String) -> Bool {
        s.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    /// Why `name` cannot name a container, or nil.
    public static func nameProblem(_ name: String) -> String? {
        guard let first = name.unicodeScalars.first, name.utf8.count <= 128 else {
            return "a name has 1 to 128 characters"
        }
        let allowed = name.unicodeScalars.allSatisfy {
            ($0.value >= 48 && $0.value <= 57) || ($0.value >= 65 && $0.value <= 90) || ($0.value >= 97 && $0.value <= 122)
                || $0 == "_" || $0 == "." || $0 == "-"
        }
        guard allowed, first != ".", first != "-", first != "_" else {
            return "\(name) is not a valid name: use letters, digits, '_', '.' and '-', starting with a letter or digit"
        }
        if isID(name) { return "\(name) looks like a container id" }
        return nil
    }

    public static func newID() -> String {
        var bytes = [UInt8](repeating: 0, count: 32)
        _ = nook_random(&bytes, UInt(bytes.count))
        return bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }

    // MARK: Creating and removing

    /// Makes a container: reserves its name (the short id when nil) and
    /// writes its first record. A name in use is an error naming it.
    public func create(_ make: (String, String) -> ContainerRecord, name: String?) throws -> ContainerRecord {
        let global = try LockFile.exclusive(at: rootFD, ".lock", what: path + "/.lock")
        defer { global.release() }
        let id = Self.newID()
        let chosen = name ?? String(id.prefix(12))
        if let reason = Self.nameProblem(chosen) { throw UsageFailure("--name: \(reason)") }
        // Names win over ids, so a name that looks like an id would take
        // commands meant for the container ps shows with that id.
        if let name, name.utf8.count >= 12, Self.isLowerHex(name) {
            throw UsageFailure("--name \(name): a name of 12 or more hexadecimal digits would be taken for a "
                + "container's id", hint: "choose a name with another letter in it")
        }
        if let owner = try? readName(chosen), let other = try? record(owner) {
            throw ContainerFailure("the name \(chosen) is in use by container \(other.shortID) (\(other.status.rawValue))",
                                   hint: "choose another --name, or remove it: nook rm -f \(chosen)")
        }
        guard mkdirat(rootFD, id, 0o700) == 0 else {
            throw ContainerFailure("make the state directory \(path)/\(id): \(Errno.current)")
        }
        let record = make(id, chosen)
        do {
            try writeFile(id + "/state.json", try encode(record))
            // Replaced when stale (its container was removed by hand).
            _ = unlinkat(rootFD, "names/" + chosen, 0)
            try writeFile("names/" + chosen, Array(id.utf8), exclusive: true)
        } catch {
            removeDirectory(id)
            throw error
        }
        return record
    }

    /// Removes a container's files and its name. The caller has made sure
    /// nothing of it runs.
    public func remove(_ record: ContainerRecord) throws {
        let global = try LockFile.exclusive(at: rootFD, ".lock", what: path + "/.lock")
        defer { global.release() }
        if (try? readName(record.name)) == record.id { _ = unlinkat(rootFD, "names/" + record.name, 0) }
        removeDirectory(record.id)
    }

    /// Removes a container directory whose state cannot be read at all.
    public func removeBroken(id: String) throws {
        guard Self.isID(id) else { throw ContainerFailure("\(id) is not a container id") }
        let global = try LockFile.exclusive(at: rootFD, ".lock", what: path + "/.lock")
        defer { global.release() }
        removeDirectory(id)
        for name in list("names") where (try? readName(name)) == id { _ = unlinkat(rootFD, "names/" + name, 0) }
    }

    /// Deletes `id`'s directory and what is in it, without following links.
    /// The directory is first renamed out of the way, in one step: a nook
    /// command that reaches for the container afterwards (the monitor of a
    /// container removed while `nook run -d` was still making it, taking its
    /// lock) finds nothing there, instead of making a file in a directory
    /// being emptied, which then stayed behind. Caller holds the store lock.
    func removeDirectory(_ id: String) {
        let doomed = Self.removedPrefix + id
        if renameat(rootFD, id, rootFD, doomed) != 0 && errno != ENOENT {
            // Not renamed (a leftover of the same id): emptied in place.
            deleteTree(id)
        }
        sweepRemoved()
    }

    /// Names a removed container's directory has until it is gone.
    static let removedPrefix = ".removed-"

    /// Empties and deletes every renamed directory: this removal's, and
    /// any a removal that was killed half-way left.
    func sweepRemoved() {
        for name in list(nil) where name.hasPrefix(Self.removedPrefix) { deleteTree(name) }
    }

    /// Deletes a directory of plain files; a few rounds, for a file that a
    /// process holding the directory open still made while it was emptied.
    func deleteTree(_ name: String) {
        for _ in 0..<5 {
            let fd = openat(rootFD, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else {
                // A symlink or file planted in a container's place: itself
                // removed, never what it points to.
                if errno == ELOOP || errno == ENOTDIR { _ = unlinkat(rootFD, name, 0) }
                return
            }
            for entry in entries(of: fd) { _ = unlinkat(fd, entry, 0) }
            close(fd)
            if unlinkat(rootFD, name, AT_REMOVEDIR) == 0 || errno == ENOENT { return }
            usleep(10_000)
        }
    }

    // MARK: Reading

    /// The id a name stands for, read without checking the record (for
    /// removing one nook refuses to read).
    public func idNamed(_ name: String) -> String? {
        guard Self.nameProblem(name) == nil, let id = try? readName(name), Self.isID(id) else { return nil }
        return id
    }

    /// Every container's id (its directory name).
    public func ids() -> [String] { list(nil).filter(Self.isID) }

    /// The record of container `id`, checked.
    public func record(_ id: String) throws(ContainerFailure) -> ContainerRecord {
        let bytes = try readFile(id + "/state.json", what: "the state of container \(id.prefix(12))")
        let record: ContainerRecord
        do {
            record = try JSONDecoder().decode(ContainerRecord.self, from: Data(bytes))
        } catch {
            throw tampered(id, "it is not a state file nook writes (\(error))")
        }
        if let problem = record.problem(directoryName: id) { throw tampered(id, problem) }
        return record
    }

    func tampered(_ id: String, _ reason: String) -> ContainerFailure {
        ContainerFailure("the state of container \(id.prefix(12)) (\(path)/\(id)/state.json) is refused: \(reason)",
                         hint: "nook never acts on it; nook rm -f \(id.prefix(12)) removes it")
    }

    /// The container a reference names: a name, an id, or a unique prefix
    /// of an id.
    public func lookup(_ reference: String) throws(ContainerFailure) -> ContainerRecord {
        if Self.nameProblem(reference) == nil, let id = try? readName(reference), Self.isID(id) {
            let record = try record(id)
            if record.name == reference { return record }
        }
        let lowered = reference.lowercased()
        guard !lowered.isEmpty, Self.isLowerHex(lowered) else {
            throw ContainerFailure("no container \(reference)", hint: "nook ps -a lists them", exitCode: 125)
        }
        let matches = ids().filter { $0.hasPrefix(lowered) }
        switch matches.count {
        case 0: throw ContainerFailure("no container \(reference)", hint: "nook ps -a lists them")
        case 1: return try record(matches[0])
        default:
            let names = matches.prefix(5).map { String($0.prefix(12)) }.joined(separator: ", ")
            throw ContainerFailure("\(reference) matches \(matches.count) containers: \(names)",
                                   hint: "give more of the id, or the name")
        }
    }

    func readName(_ name: String) throws -> String {
        let bytes = try readFile("names/" + name, what: "the name \(name)", limit: 128)
        return String(decoding: bytes, as: UTF8.self)
    }

    // MARK: Changing

    /// Runs `change` on the current record under the container's lock and
    /// writes the result back atomically; returns it.
    @discardableResult
    public func update(_ id: String, _ change: (inout ContainerRecord) throws -> Void) throws -> ContainerRecord {
        let lock = try LockFile.exclusive(at: rootFD, id + "/lock", what: "\(path)/\(id)/lock")
        defer { lock.release() }
        var record = try record(id)
        try change(&record)
        try writeFile(id + "/state.json", try encode(record))
        return record
    }

    /// Writes a file of the container's (spec.json), atomically.
    public func write(_ id: String, file: String, _ bytes: [UInt8]) throws {
        try writeFile(id + "/" + file, bytes)
    }

    public func read(_ id: String, file: String, limit: Int = 16 << 20) throws(ContainerFailure) -> [UInt8] {
        try readFile(id + "/" + file, what: "\(file) of container \(id.prefix(12))", limit: limit)
    }

    /// Whether container `id`'s directory is still there (not removed).
    public func holds(_ id: String) -> Bool {
        var sb = stat()
        return Self.isID(id) && fstatat(rootFD, id, &sb, AT_SYMLINK_NOFOLLOW) == 0
    }

    /// The container's directory, for the files it holds (logs).
    public func directory(of id: String) -> String { path + "/" + id }

    /// A descriptor of the container's directory, opened without following links.
    public func openDirectory(_ id: String) throws(ContainerFailure) -> Int32 {
        let fd = openat(rootFD, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw ContainerFailure("open \(path)/\(id): \(Errno.current)") }
        return fd
    }

    func encode(_ record: ContainerRecord) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return Array(try encoder.encode(record)) + [10]
    }

    // MARK: Files

    func readFile(_ relative: String, what: String, limit: Int = 1 << 20) throws(ContainerFailure) -> [UInt8] {
        // A file with no link left was replaced by an update between our
        // open and fstat: a whole earlier version. Opened again for the
        // newest; taken as it is if updates keep coming.
        for _ in 0..<8 {
            if let bytes = try readFile(relative, what: what, limit: limit, replaced: false) { return bytes }
        }
        return try readFile(relative, what: what, limit: limit, replaced: true) ?? []
    }

    /// One try of readFile: nil when the file opened had been replaced and
    /// `replaced` is false.
    func readFile(_ relative: String, what: String, limit: Int, replaced: Bool) throws(ContainerFailure) -> [UInt8]? {
        let fd = nook_openat2(rootFD, relative, UInt64(O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK), 0,
                              UInt64(NOOK_RESOLVE_BENEATH | NOOK_RESOLVE_NO_SYMLINKS))
        guard fd >= 0 else {
            if fd == -ENOENT { throw ContainerFailure("\(what) is missing (\(path)/\(relative))") }
            if fd == -ELOOP { throw ContainerFailure("\(what) is refused: \(path)/\(relative) passes through a symlink",
                                                      hint: "nook never follows links in its state") }
            throw ContainerFailure("open \(path)/\(relative): \(Errno(-fd))")
        }
        defer { close(fd) }
        var sb = stat()
        guard fstat(fd, &sb) == 0 else { throw ContainerFailure("stat \(path)/\(relative): \(Errno.current)") }
        if sb.st_mode & S_IFMT != S_IFREG {
            throw ContainerFailure("\(what) is refused: \(path)/\(relative) is not a regular file")
        }
        if sb.st_nlink == 0 && !replaced { return nil }
        if sb.st_uid != uid || sb.st_mode & 0o022 != 0 || sb.st_nlink > 1 {
            throw ContainerFailure("\(what) is refused: \(path)/\(relative) is not a private file of yours "
                + "(owner \(sb.st_uid), mode \(String(sb.st_mode & 0o7777, radix: 8)), \(sb.st_nlink) links)",
                hint: "nook writes its state with mode 600; remove the container with nook rm -f")
        }
        guard Int(sb.st_size) <= limit, let bytes = readFileBytes(fd: fd, limit: limit) else {
            throw ContainerFailure("\(what) is refused: \(path)/\(relative) is larger than \(limit) bytes")
        }
        return bytes
    }

    /// Writes `bytes` to `relative` through a new file renamed into place.
    func writeFile(_ relative: String, _ bytes: [UInt8], exclusive: Bool = false) throws(ContainerFailure) {
        let slash = relative.lastIndex(of: "/")
        let dirPart = slash.map { String(relative[..<$0]) } ?? "."
        let base = slash.map { String(relative[relative.index(after: $0)...]) } ?? relative
        let dir = nook_openat2(rootFD, dirPart, UInt64(O_RDONLY | O_DIRECTORY | O_CLOEXEC), 0,
                               UInt64(NOOK_RESOLVE_BENEATH | NOOK_RESOLVE_NO_SYMLINKS))
        guard dir >= 0 else { throw ContainerFailure("open \(path)/\(dirPart): \(Errno(-dir))") }
        defer { close(dir) }
        let temporary = exclusive ? base : ".\(base).\(Self.newID().prefix(8))"
        let fd = openat(dir, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw ContainerFailure("write \(path)/\(dirPart)/\(temporary): \(Errno.current)")
        }
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                let e = Errno.current
                close(fd)
                _ = unlinkat(dir, temporary, 0)
                throw ContainerFailure("write \(path)/\(relative): \(e)")
            }
            written += n
        }
        close(fd)
        if !exclusive && renameat(dir, temporary, dir, base) != 0 {
            let e = Errno.current
            _ = unlinkat(dir, temporary, 0)
            throw ContainerFailure("replace \(path)/\(relative): \(e)")
        }
    }

    func list(_ subdirectory: String?) -> [String] {
        let fd = subdirectory.map { openat(rootFD, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            ?? dup(rootFD)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        return entries(of: fd)
    }

    /// Names in a directory (not . and ..); `fd` stays open.
    func entries(of fd: Int32) -> [String] {
        let copy = dup(fd)
        guard copy >= 0, let dir = fdopendir(copy) else { return [] }
        defer { closedir(dir) }
        rewinddir(dir)
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}

/// An flock(2) lock on a file below the store, waited for with a limit: a
/// lock is released when its holder dies, so only a live holder can make
/// a command wait, and not for ever.
final class LockFile {
    let fd: Int32

    private init(fd: Int32) { self.fd = fd }

    static func exclusive(at dir: Int32, _ relative: String, what: String,
                          seconds: Int = 30) throws(ContainerFailure) -> LockFile {
        try take(LOCK_EX, at: dir, relative, what: what, seconds: seconds)
    }

    static func shared(at dir: Int32, _ relative: String, what: String,
                       seconds: Int = 30) throws(ContainerFailure) -> LockFile {
        try take(LOCK_SH, at: dir, relative, what: what, seconds: seconds)
    }

    static func take(_ kind: Int32, at dir: Int32, _ relative: String, what: String,
                     seconds: Int) throws(ContainerFailure) -> LockFile {
        let fd = nook_openat2(dir, relative, UInt64(O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW), 0o600,
                              UInt64(NOOK_RESOLVE_BENEATH | NOOK_RESOLVE_NO_SYMLINKS))
        guard fd >= 0 else { throw ContainerFailure("open the lock \(what): \(Errno(-fd))") }
        // By the clock: counting sleeps made the limit minutes long on a
        // loaded machine (the VM tier).
        let deadline = monotonicSeconds() + Double(seconds)
        while flock(fd, kind | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR else {
                let e = Errno.current
                close(fd)
                throw ContainerFailure("lock \(what): \(e)")
            }
            if monotonicSeconds() >= deadline {
                close(fd)
                throw ContainerFailure("\(what) has been locked by another nook command for \(seconds) seconds",
                                       hint: "try again; fuser \(what) shows who holds it")
            }
            usleep(10_000)
        }
        return LockFile(fd: fd)
    }

    func release() {
        flock(fd, LOCK_UN)
        close(fd)
    }

    deinit {}
}
