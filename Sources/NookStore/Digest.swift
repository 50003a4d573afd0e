#if canImport(Glibc)
import Glibc
#endif
import CNookDigest
import NookSupport

/// A content digest, `sha256:` and 64 lowercase hex digits (image-spec
/// descriptor.md, "Digests"). The only algorithm nook accepts: the hex names
/// files in the store, so it is checked to be exactly that before use.
public struct Digest: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    /// The 64 hex digits.
    public let hex: String

    /// Parses `sha256:<64 lowercase hex>`; nil for anything else.
    public init?(_ text: String) {
        guard text.hasPrefix("sha256:") else { return nil }
        let hex = text.dropFirst(7)
        guard Digest.isHex(hex) else { return nil }
        self.hex = String(hex)
    }

    /// From 64 hex digits without the algorithm.
    package init?(hex: some StringProtocol) {
        guard Digest.isHex(hex) else { return nil }
        self.hex = String(hex)
    }

    init(bytes: [UInt8]) {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        hex = String(decoding: out, as: UTF8.self)
    }

    static func isHex(_ s: some StringProtocol) -> Bool {
        s.utf8.count == 64 && s.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    public var description: String { "sha256:" + hex }

    /// The first 12 hex digits, as image ids are shown.
    public var short: String { String(hex.prefix(12)) }

    public static func < (a: Digest, b: Digest) -> Bool { a.hex < b.hex }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let d = Digest(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a sha256 digest: \(text)"))
        }
        self = d
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }

    /// Parses a descriptor's digest, saying what is wrong with it.
    static func parse(_ text: String, what: String) throws(StoreError) -> Digest {
        if let d = Digest(text) { return d }
        if let colon = text.firstIndex(of: ":"), !text.hasPrefix("sha256:") {
            throw .unsupported("\(what): digest algorithm \(text[..<colon]) is not supported",
                               hint: "nook accepts sha256 digests only")
        }
        throw .invalidImage(source: what, message: "'\(text)' is not a sha256 digest")
    }

    /// The SHA-256 of `bytes`.
    package static func of(_ bytes: [UInt8]) throws(StoreError) -> Digest {
        guard let h = nook_sha256_new() else { throw Digest.libraryMissing }
        defer { nook_sha256_free(h) }
        var out = [UInt8](repeating: 0, count: 32)
        let rc = bytes.withUnsafeBytes { nook_sha256_update(h, $0.baseAddress, $0.count) }
        guard rc == 0, nook_sha256_final(h, &out) == 0 else {
            throw .system(SystemFailure("hash", errno: Errno(EIO)))
        }
        return Digest(bytes: out)
    }

    /// The SHA-256 and size of everything readable from `fd`, copied to
    /// `copyTo` on the way when it is >= 0; fails past `max` bytes.
    package static func of(fd: Int32, copyTo: Int32 = -1, max: UInt64, what: String) throws(StoreError) -> (Digest, UInt64) {
        var out = [UInt8](repeating: 0, count: 32)
        var size: UInt64 = 0
        let rc = nook_sha256_fd(fd, copyTo, max, &out, &size)
        if rc == -ELIBACC { throw Digest.libraryMissing }
        if rc == -EFBIG {
            throw .limit(layer: nil, what: "\(what) size", limit: max, option: "--max-layer-bytes")
        }
        guard rc == 0 else { throw .system(SystemFailure("read", path: what, errno: Errno(-rc))) }
        return (Digest(bytes: out), size)
    }

    static let libraryMissing = StoreError.unsupported(
        "cannot load libcrypto (libcrypto.so.3), which nook uses for SHA-256",
        hint: "install it: sudo apt install libssl3")
}
