import NookSupport

// Reading profile files: regular files only, of a bounded size, so that a
// profile named /dev/zero or a FIFO can neither hang nor exhaust nook.
#if canImport(Glibc)
    import Glibc
#endif

/// Why a profile file could not be read.
public enum FileProblem: Error, Equatable, Sendable, CustomStringConvertible {
    case missing
    case unreadable(Errno)
    case notAFile
    case tooLarge(Int)
    case notUTF8

    /// What to do about it.
    public var fix: String {
        switch self {
        case .missing: "create it, fix the name, or mark the entry { profile = \"...\", optional = true }"
        case .unreadable: "check the file's permissions"
        case .notAFile: "name a file, not a directory or a device"
        case .tooLarge: "split it, with extends"
        case .notUTF8: "save it as UTF-8 (iconv -t UTF-8)"
        }
    }

    public var description: String {
        switch self {
        case .missing: "no such file"
        case .unreadable(let e): "cannot be read: \(e)"
        case .notAFile: "is not a regular file"
        case .tooLarge(let n): "is \(n) bytes; profiles are at most \(ProfileFiles.maxSize) bytes"
        case .notUTF8: "is not UTF-8 text (TOML files are)"
        }
    }
}

/// Where profiles are read from: the disk, or (in tests) a dictionary.
public protocol ProfileFileSystem: Sendable {
    /// The whole file as text.
    func read(_ path: String) -> Result<String, FileProblem>
    /// The names of the `.toml` files in a directory, sorted; none when
    /// it does not exist.
    func tomlFiles(in directory: String) -> [String]
    /// A name for the file that is the same however it was reached
    /// (symbolic links resolved), for finding cycles.
    func canonical(_ path: String) -> String
}

public enum ProfileFiles {
    public static let maxSize = 1 << 20
}

/// The real filesystem.
public struct DiskFileSystem: ProfileFileSystem {
    public init() {}

    public func read(_ path: String) -> Result<String, FileProblem> {
        // O_NONBLOCK: opening a FIFO must not wait for a writer.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        guard fd >= 0 else {
            let e = Errno.current
            return .failure(e.rawValue == ENOENT ? .missing : .unreadable(e))
        }
        defer { close(fd) }
        var sb = stat()
        guard fstat(fd, &sb) == 0 else { return .failure(.unreadable(.current)) }
        guard (sb.st_mode & S_IFMT) == S_IFREG else { return .failure(.notAFile) }
        guard sb.st_size <= ProfileFiles.maxSize else { return .failure(.tooLarge(Int(sb.st_size))) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = Glibc.read(fd, &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return .failure(.unreadable(.current)) }
            if n == 0 { break }
            bytes += buffer[0..<n]
            if bytes.count > ProfileFiles.maxSize { return .failure(.tooLarge(bytes.count)) }
        }
        // Decoding would replace bad bytes silently; TOML must be UTF-8.
        guard let text = String(validating: bytes, as: UTF8.self) else { return .failure(.notUTF8) }
        return .success(text)
    }

    public func tomlFiles(in directory: String) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name.hasSuffix(".toml"), !name.hasPrefix(".") { names.append(name) }
        }
        return names.sorted()
    }

    public func canonical(_ path: String) -> String {
        guard let p = realpath(path, nil) else { return path }
        defer { free(p) }
        return String(cString: p)
    }
}

/// Profiles held in memory: path -> text. Paths in `unreadable` fail as
/// EACCES would.
public struct MemoryFileSystem: ProfileFileSystem {
    public var files: [String: String]
    public var unreadable: Set<String>

    public init(_ files: [String: String], unreadable: Set<String> = []) {
        self.files = files
        self.unreadable = unreadable
    }

    public func read(_ path: String) -> Result<String, FileProblem> {
        if unreadable.contains(path) { return .failure(.unreadable(Errno(EACCES))) }
        guard let text = files[path] else { return .failure(.missing) }
        return .success(text)
    }

    public func tomlFiles(in directory: String) -> [String] {
        let prefix = directory.hasSuffix("/") ? directory : directory + "/"
        return (Array(files.keys) + Array(unreadable)).filter {
            $0.hasPrefix(prefix) && !$0.dropFirst(prefix.count).contains("/") && $0.hasSuffix(".toml")
        }.map { String($0.dropFirst(prefix.count)) }.sorted()
    }

    public func canonical(_ path: String) -> String { path }
}

/// `path` with `.` and empty components removed. `..` is kept for the
/// kernel to resolve: applying it to the text would be wrong when the
/// component before it is a symbolic link.
func cleanedPath(_ path: String) -> String {
    let parts = path.split(separator: "/").filter { $0 != "." }
    return (path.hasPrefix("/") ? "/" : "") + parts.joined(separator: "/")
}

func directoryOf(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
}
