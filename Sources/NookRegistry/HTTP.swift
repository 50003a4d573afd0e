#if canImport(Glibc)
import Glibc
#endif
import CNookCurl
import NookSupport

/// One HTTP request, as CNookCurl performs it.
struct HTTPRequest {
    enum Body {
        case none
        case bytes([UInt8])
        /// `length` bytes of `fd` from `offset`.
        case file(fd: Int32, offset: UInt64, length: UInt64)
    }

    var method = "GET"
    var url: String
    var headers: [String] = []
    var body = Body.none
    /// A 2xx body goes to this descriptor (appended) instead of memory.
    var output: Int32 = -1
    var maxBody: UInt64 = 4 << 20
    /// A Range request whose 200 answer replaces what output held.
    var restartOnFull = false
    var tls = TLSSettings()
    var cancel: CancelFlag?
    var progress: ProgressCounter?
}

/// How to check a registry's certificate.
struct TLSSettings: Equatable {
    /// A PEM file of certificate authorities to trust instead of the system's.
    var caFile: String?
    /// Accept any certificate (registries listed as insecure).
    var skipVerify = false
}

struct HTTPResponse {
    var status: Int
    /// Header names lowercased, in order.
    var headers: [(name: String, value: String)]
    var body: [UInt8]
    var written: UInt64

    func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.first { $0.name == n }?.value
    }

    func headers(_ name: String) -> [String] {
        let n = name.lowercased()
        return headers.filter { $0.name == n }.map(\.value)
    }

    /// The body as text for an error message: the distribution spec's
    /// `{"errors":[{"code","message"}]}` when it is that, else the start.
    var message: String {
        struct Errors: Decodable {
            struct E: Decodable { var code: String?; var message: String? }
            var errors: [E]?
        }
        if let e = try? JSONParse.decode(Errors.self, body), let list = e.errors, !list.isEmpty {
            return list.map { [$0.code, $0.message].compactMap { $0 }.joined(separator: ": ") }.joined(separator: "; ")
        }
        let text = String(decoding: body.prefix(200), as: UTF8.self).filter { !$0.isNewline }
        return text.allSatisfy { $0.isASCII && ($0 == " " || !$0.isWhitespace) } ? text.trimming(" ") : ""
    }
}

/// Why a transfer failed before a whole response arrived.
struct TransferFailure: Error {
    /// -errno from CNookCurl: -EIO (see message), -EFBIG, -ECANCELED, -ELIBACC.
    var code: Int32
    var curlCode: Int32
    var message: String
    /// Bytes of the body already written to the output.
    var written: UInt64

    /// A TLS handshake or certificate failure (curl 35, 58, 59, 60, 77, 83,
    /// 90, 91): retrying does not help; for localhost it may mean the
    /// registry speaks plain HTTP.
    var isTLS: Bool { [35, 53, 54, 58, 59, 60, 66, 77, 80, 82, 83, 90, 91].contains(curlCode) }
    var isCertificate: Bool { [60, 77, 83, 90, 91].contains(curlCode) }
    /// Nothing accepted the connection (CURLE_COULDNT_CONNECT).
    var isRefused: Bool { curlCode == 7 }
}

/// Set from another thread to end transfers in progress.
final class CancelFlag: @unchecked Sendable {
    let pointer = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
    init() { pointer.initialize(to: 0) }
    deinit { pointer.deallocate() }
    func cancel() { pointer.pointee = 1 }
    var isCancelled: Bool { pointer.pointee != 0 }
}

/// Bytes transferred so far, written by CNookCurl during a transfer and
/// read by the progress display; a torn read only shows a wrong number.
final class ProgressCounter: @unchecked Sendable {
    let pointer = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    init() { pointer.initialize(to: 0) }
    deinit { pointer.deallocate() }
    var value: UInt64 { pointer.pointee }
}

enum HTTP {
    /// Performs one request (no redirects followed).
    static func perform(_ request: HTTPRequest, progressBase: UInt64 = 0) -> Result<HTTPResponse, TransferFailure> {
        var headerStrings = request.headers.map { strdup($0) }
        defer { for p in headerStrings { free(p) } }
        var response = nook_http_response()
        let rc: Int32 = request.method.withCString { method in
            request.url.withCString { url in
                withOptionalCString(request.tls.caFile) { ca in
                    headerStrings.withUnsafeMutableBufferPointer { hs in
                        hs.withMemoryRebound(to: UnsafePointer<CChar>?.self) { headers in
                            var r = nook_http_request()
                            r.method = method
                            r.url = url
                            r.headers = UnsafePointer(headers.baseAddress)
                            r.header_count = headers.count
                            r.ca_file = ca
                            r.skip_tls_verify = request.tls.skipVerify ? 1 : 0
                            r.body_fd = -1
                            r.out_fd = request.output
                            r.restart_on_full = request.restartOnFull ? 1 : 0
                            r.max_body = request.maxBody
                            r.cancel = request.cancel.map { UnsafeMutablePointer($0.pointer) }
                            r.progress = request.progress.map { UnsafeMutablePointer($0.pointer) }
                            r.connect_timeout = 30
                            r.stall_timeout = 60
                            switch request.body {
                            case .none:
                                return nook_http_perform(&r, &response)
                            case .file(let fd, let offset, let length):
                                r.body_fd = fd
                                r.body_offset = offset
                                r.body_length = length
                                return nook_http_perform(&r, &response)
                            case .bytes(let bytes):
                                return bytes.withUnsafeBytes { raw in
                                    r.body = raw.baseAddress
                                    r.body_size = raw.count
                                    return nook_http_perform(&r, &response)
                                }
                            }
                        }
                    }
                }
            }
        }
        defer { nook_http_response_free(&response) }
        if rc != 0 {
            let message: String
            switch rc {
            case -ELIBACC: message = "cannot load libcurl (libcurl.so.4), which nook uses for HTTP"
            case -EFBIG: message = "the answer is larger than \(request.maxBody) bytes"
            case -ECANCELED: message = "cancelled"
            case -EIO: message = withUnsafeBytes(of: response.error) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            default: message = Errno(-rc).description
            }
            return .failure(TransferFailure(code: rc, curlCode: response.curl_code, message: message,
                                            written: response.written))
        }
        let headerText = response.headers.map { String(cString: $0) } ?? ""
        var headers: [(String, String)] = []
        for line in headerText.split(whereSeparator: { $0 == "\r\n" || $0 == "\n" }).dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((line[..<colon].lowercased(), line[line.index(after: colon)...].trimming(" \t\r")))
        }
        let body = response.body.map { Array(UnsafeBufferPointer(start: $0, count: response.body_length)) } ?? []
        return .success(HTTPResponse(status: Int(response.status), headers: headers, body: body,
                                     written: response.written))
    }

    private static func withOptionalCString<T>(_ s: String?, _ body: (UnsafePointer<CChar>?) -> T) -> T {
        guard let s else { return body(nil) }
        return s.withCString { body($0) }
    }
}

/// The parts of an http(s) URL nook needs: to compare origins and resolve
/// a redirect's Location.
struct URLParts: Equatable {
    var scheme: String
    /// host[:port], as written.
    var authority: String
    /// From the first `/` on, query included.
    var rest: String

    init?(_ url: String) {
        let lower = url.lowercased()
        let prefix = lower.hasPrefix("https://") ? "https" : lower.hasPrefix("http://") ? "http" : nil
        guard let prefix else { return nil }
        scheme = prefix
        let after = url.dropFirst(prefix.count + 3)
        let slash = after.firstIndex { $0 == "/" || $0 == "?" } ?? after.endIndex
        authority = String(after[..<slash])
        rest = String(after[slash...])
        if rest.isEmpty || rest.hasPrefix("?") { rest = "/" + rest }
        guard !authority.isEmpty, !authority.contains("@") else { return nil }
    }

    var text: String { "\(scheme)://\(authority)\(rest)" }

    /// The host without the port (brackets kept for IPv6).
    var host: String {
        if authority.hasPrefix("[") { return String(authority.prefix { $0 != "]" }) + "]" }
        return String(authority.prefix { $0 != ":" }).lowercased()
    }

    var origin: String {
        var a = authority.lowercased()
        if scheme == "https" && a.hasSuffix(":443") { a.removeLast(4) }
        if scheme == "http" && a.hasSuffix(":80") { a.removeLast(3) }
        return scheme + "://" + a
    }

    /// `location` (absolute, scheme-relative, absolute-path or relative)
    /// against this URL.
    func resolve(_ location: String) -> URLParts? {
        if location.contains("://") { return URLParts(location) }
        if location.hasPrefix("//") { return URLParts(scheme + ":" + location) }
        if location.hasPrefix("/") { return URLParts("\(scheme)://\(authority)\(location)") }
        let path = rest.prefix { $0 != "?" }
        let dir = path[..<(path.lastIndex(of: "/").map { path.index(after: $0) } ?? path.endIndex)]
        return URLParts("\(scheme)://\(authority)\(dir)\(location)")
    }
}

/// Percent-encoding for query values.
func queryEscape(_ s: String) -> String {
    var out = ""
    for b in s.utf8 {
        if (b >= 65 && b <= 90) || (b >= 97 && b <= 122) || (b >= 48 && b <= 57) || b == 45 || b == 46 || b == 95 || b == 126 {
            out.append(Character(UnicodeScalar(b)))
        } else {
            out += "%" + String(b, radix: 16, uppercase: true).leftPadded(2)
        }
    }
    return out
}

extension String {
    func leftPadded(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}
