#if canImport(Glibc)
import Glibc
#endif

/// An errno value that prints as its name and the C library's text,
/// `EPERM (Operation not permitted)`.
public struct Errno: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32

    public init(_ rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's current errno.
    public static var current: Errno { Errno(errno) }

    public var name: String { Errno.names[rawValue] ?? "E\(rawValue)" }

    public var text: String { String(cString: strerror(rawValue)) }

    public var description: String { "\(name) (\(text))" }

    static let names: [Int32: String] = [
        EPERM: "EPERM", ENOENT: "ENOENT", ESRCH: "ESRCH", EINTR: "EINTR", EIO: "EIO", ENXIO: "ENXIO",
        E2BIG: "E2BIG", ENOEXEC: "ENOEXEC", EBADF: "EBADF", ECHILD: "ECHILD", EAGAIN: "EAGAIN",
        ENOMEM: "ENOMEM", EACCES: "EACCES", EFAULT: "EFAULT", ENOTBLK: "ENOTBLK", EBUSY: "EBUSY",
        EEXIST: "EEXIST", EXDEV: "EXDEV", ENODEV: "ENODEV", ENOTDIR: "ENOTDIR", EISDIR: "EISDIR",
        EINVAL: "EINVAL", ENFILE: "ENFILE", EMFILE: "EMFILE", ENOTTY: "ENOTTY", ETXTBSY: "ETXTBSY",
        EFBIG: "EFBIG", EILSEQ: "EILSEQ", ENOSPC: "ENOSPC", ESPIPE: "ESPIPE", EROFS: "EROFS", EMLINK: "EMLINK",
        EPIPE: "EPIPE", EDOM: "EDOM", ERANGE: "ERANGE", EDEADLK: "EDEADLK", ENAMETOOLONG: "ENAMETOOLONG",
        ENOLCK: "ENOLCK", ENOSYS: "ENOSYS", ENOTEMPTY: "ENOTEMPTY", ELOOP: "ELOOP", ENOMSG: "ENOMSG",
        ENODATA: "ENODATA", ENOTSUP: "ENOTSUP", EOVERFLOW: "EOVERFLOW", EADDRINUSE: "EADDRINUSE",
        ECONNREFUSED: "ECONNREFUSED", ETIMEDOUT: "ETIMEDOUT", ENETUNREACH: "ENETUNREACH",
        EHOSTUNREACH: "EHOSTUNREACH", ESTALE: "ESTALE", EDQUOT: "EDQUOT", ECANCELED: "ECANCELED",
        EUSERS: "EUSERS", ENOTSOCK: "ENOTSOCK", ECONNRESET: "ECONNRESET",
    ]
}
