import Foundation

/// Builds tar streams (ustar, with PAX records where needed) byte by byte,
/// so tests can make exactly the layers they need, hostile ones included.
struct TarBuilder {
    enum Kind: UInt8 {
        case file = 48, hardlink = 49, symlink = 50, char = 51, block = 52, directory = 53, fifo = 54
    }

    private(set) var bytes: [UInt8] = []
    var uid = Int(getuid())
    var gid = Int(getgid())

    mutating func add(_ name: String, _ kind: Kind = .file, data: String = "", link: String = "", mode: Int? = nil,
                      uid: Int? = nil, gid: Int? = nil, size: Int? = nil, major: Int = 0, minor: Int = 0,
                      pax: [String: String] = [:]) {
        let body = Array(data.utf8)
        var records = pax
        let owner = uid ?? self.uid, group = gid ?? self.gid
        if name.utf8.count > 99 { records["path"] = name }
        if link.utf8.count > 99 { records["linkpath"] = link }
        if owner > 0o7777777 { records["uid"] = String(owner) }
        if group > 0o7777777 { records["gid"] = String(group) }
        if !records.isEmpty {
            var text: [UInt8] = []
            for (key, value) in records.sorted(by: { $0.key < $1.key }) {
                let line = " \(key)=\(value)\n"
                var length = line.utf8.count + 1
                while String(length).count + line.utf8.count != length { length = String(length).count + line.utf8.count }
                text += Array("\(length)\(line)".utf8)
            }
            header("PaxHeader", type: 120, size: text.count, mode: 0o644, uid: 0, gid: 0, link: "", major: 0, minor: 0)
            append(text)
        }
        let declared = kind == .file ? (size ?? body.count) : 0
        header(String(name.prefix(99)), type: kind.rawValue, size: declared,
               mode: mode ?? (kind == .directory ? 0o755 : 0o644), uid: min(owner, 0o7777777),
               gid: min(group, 0o7777777), link: String(link.prefix(99)), major: major, minor: minor)
        if kind == .file { append(body) }
    }

    private mutating func header(_ name: String, type: UInt8, size: Int, mode: Int, uid: Int, gid: Int, link: String,
                                 major: Int, minor: Int) {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ s: String, _ at: Int, _ width: Int) {
            for (i, b) in s.utf8.prefix(width).enumerated() { h[at + i] = b }
        }
        func octal(_ v: Int, _ at: Int, _ width: Int) {
            let s = String(v, radix: 8)
            put(String(repeating: "0", count: max(0, width - 1 - s.count)) + s, at, width - 1)
        }
        put(name, 0, 100)
        octal(mode, 100, 8)
        octal(uid, 108, 8)
        octal(gid, 116, 8)
        octal(size, 124, 12)
        octal(1_700_000_000, 136, 12)
        h[156] = type
        put(link, 157, 100)
        put("ustar", 257, 6)
        put("00", 263, 2)
        octal(major, 329, 8)
        octal(minor, 337, 8)
        for i in 148..<156 { h[i] = 32 }
        octal(h.reduce(0) { $0 + Int($1) }, 148, 7)
        h[155] = 32
        bytes += h
    }

    private mutating func append(_ data: [UInt8]) {
        bytes += data
        let pad = (512 - data.count % 512) % 512
        bytes += [UInt8](repeating: 0, count: pad)
    }

    /// The archive with its end marker.
    var archive: [UInt8] { bytes + [UInt8](repeating: 0, count: 1024) }
}

/// A temporary directory, removed (as far as this process may) at deinit.
final class TempDirectory {
    let path: String

    init() {
        path = NSTemporaryDirectory() + "nook-store-test-" + UUID().uuidString.prefix(8)
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func write(_ name: String, _ bytes: [UInt8]) -> String {
        let file = path + "/" + name
        FileManager.default.createFile(atPath: file, contents: Data(bytes))
        return file
    }

    func mkdir(_ name: String) -> String {
        let dir = path + "/" + name
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }
}

/// Runs a program and returns its stdout (for gzip and zstd).
func pipe(_ program: String, _ args: [String], input: [UInt8]) -> [UInt8] {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: program)
    p.arguments = args
    let inPipe = Pipe(), outPipe = Pipe()
    p.standardInput = inPipe
    p.standardOutput = outPipe
    try? p.run()
    let writer = Thread {
        inPipe.fileHandleForWriting.write(Data(input))
        try? inPipe.fileHandleForWriting.close()
    }
    writer.start()
    let out = outPipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return Array(out)
}
