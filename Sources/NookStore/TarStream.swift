#if canImport(Glibc)
import Glibc
#endif
import CNookArchive

/// One entry of a tar stream.
struct TarEntry {
    var path: String
    var hardlink: String?
    var symlink: String?
    /// Type and permission bits, as st_mode.
    var mode: UInt32
    var uid: Int64
    var gid: Int64
    var size: Int64
    var mtime: timespec
    var atime: timespec?
    var rdevMajor: UInt32
    var rdevMinor: UInt32
    var xattrCount: Int
    var aclCount: Int

    var type: UInt32 { mode & UInt32(S_IFMT) }
    var permissions: UInt32 { mode & 0o7777 }
}

/// Why reading a stream failed.
struct StreamError: Error {
    var errno: Int32
    var message: String
    /// The decompressed stream passed its limit.
    var overLimit: Bool
}

/// What a finished stream hashed and counted.
struct StreamTotals {
    /// Digest and size of the bytes as stored (compressed, if they were).
    var stored: Digest
    var storedBytes: UInt64
    /// Digest and size of the decompressed tar stream: the layer's diffID.
    var tar: Digest
    var tarBytes: UInt64
}

/// A tar stream read through CNookArchive, hashing and counting as it goes.
/// Swift's view of nook_archive.h.
final class TarStream {
    private var s: OpaquePointer?

    /// Opens the tar (plain or compressed) readable from fd; stored bytes are
    /// copied to `copyTo` when it is >= 0.
    init(fd: Int32, copyTo: Int32 = -1, maxTarBytes: UInt64) throws(StreamError) {
        var out: OpaquePointer?
        let rc = nook_stream_open(fd, copyTo, maxTarBytes, &out)
        s = out
        if rc != 0 { throw error(rc) }
    }

    deinit { nook_stream_close(s) }

    private func error(_ rc: Int32) -> StreamError {
        if rc == -ELIBACC {
            return StreamError(errno: ELIBACC, message: "cannot load libarchive (libarchive.so.13) or libcrypto "
                + "(libcrypto.so.3); install them: sudo apt install libarchive13 libssl3", overLimit: false)
        }
        let message = s.map { String(cString: nook_stream_error($0)) } ?? ""
        let over = s.map { nook_stream_over_limit($0) == 1 } ?? false
        return StreamError(errno: -rc, message: message.isEmpty ? String(cString: strerror(-rc)) : message,
                           overLimit: over)
    }

    /// The next entry, or nil at the end of the archive.
    func next() throws(StreamError) -> TarEntry? {
        var e = nook_entry()
        let rc = nook_stream_next(s, &e)
        if rc == 0 { return nil }
        if rc < 0 { throw error(rc) }
        guard let path = String(validatingCString: e.path) else {
            throw StreamError(errno: EILSEQ, message: "an entry name is not valid UTF-8: "
                + String(decoding: UnsafeRawBufferPointer(start: e.path, count: strlen(e.path)), as: UTF8.self),
                overLimit: false)
        }
        func text(_ p: UnsafePointer<CChar>?, _ what: String) throws(StreamError) -> String? {
            guard let p else { return nil }
            guard let s = String(validatingCString: p) else {
                throw StreamError(errno: EILSEQ, message: "the \(what) of \(path) is not valid UTF-8", overLimit: false)
            }
            return s
        }
        return TarEntry(
            path: path, hardlink: try text(e.hardlink, "link target"), symlink: try text(e.symlink, "symlink target"),
            mode: e.mode, uid: e.uid, gid: e.gid, size: e.size,
            mtime: timespec(tv_sec: Int(e.mtime_sec), tv_nsec: Int(e.mtime_nsec)),
            atime: e.has_atime != 0 ? timespec(tv_sec: Int(e.atime_sec), tv_nsec: Int(e.atime_nsec)) : nil,
            rdevMajor: e.rdev_major, rdevMinor: e.rdev_minor, xattrCount: Int(e.xattr_count),
            aclCount: Int(e.acl_count))
    }

    /// Calls `body` with each block of the current entry's data and its
    /// offset in the file (holes of a sparse file are skipped).
    func forEachBlock(_ body: (UnsafeRawBufferPointer, Int64) throws -> Void) throws {
        while true {
            var buf: UnsafeRawPointer?
            var length = 0
            var offset: Int64 = 0
            let rc = nook_stream_data(s, &buf, &length, &offset)
            if rc == 0 { return }
            if rc < 0 { throw error(rc) }
            try body(UnsafeRawBufferPointer(start: buf, count: length), offset)
        }
    }

    /// The current entry's extended attributes, in archive order.
    func xattrs(count: Int) -> [(name: String, value: [UInt8])] {
        var out: [(String, [UInt8])] = []
        for i in 0..<count {
            var name: UnsafePointer<CChar>?
            var value: UnsafeRawPointer?
            var size = 0
            guard nook_stream_xattr(s, Int32(i), &name, &value, &size) == 0, let name else { break }
            let bytes = value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? []
            out.append((String(cString: name), bytes))
        }
        return out
    }

    /// The current entry's access or default ACL in system.posix_acl_*
    /// format, or nil when it has none.
    func acl(default isDefault: Bool) -> [UInt8]? {
        var buf = [UInt8](repeating: 0, count: 4 + 8 * 1024)
        let n = nook_stream_acl(s, isDefault ? 1 : 0, &buf, buf.count)
        return n > 0 ? Array(buf[0..<Int(n)]) : nil
    }

    /// Decompressed bytes so far.
    var tarBytes: UInt64 { nook_stream_tar_bytes(s) }

    /// Reads the rest and returns the digests and sizes of everything.
    func finish() throws(StreamError) -> StreamTotals {
        var t = nook_stream_totals()
        let rc = nook_stream_finish(s, &t)
        if rc != 0 { throw error(rc) }
        let stored = withUnsafeBytes(of: t.stored_sha256) { Array($0) }
        let tar = withUnsafeBytes(of: t.tar_sha256) { Array($0) }
        return StreamTotals(stored: Digest(bytes: stored), storedBytes: t.stored_bytes, tar: Digest(bytes: tar),
                            tarBytes: t.tar_bytes)
    }
}
