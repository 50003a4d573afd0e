#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import NookStore
import NookSupport

// The distribution spec's HTTP API (distribution-spec spec.md, "Pull",
// "Push"), Docker's token authentication (distribution's docs/spec/auth/
// token.md) and basic authentication (RFC 7617), redirects to blob storage
// and retries. One client speaks to one repository of one registry; its
// methods may be called from several threads at once.

/// How often and how long to retry 429, 5xx and broken connections.
public struct RetryPolicy: Sendable {
    /// Tries in all, the first included.
    public var attempts = 5
    /// Milliseconds before the first retry, doubled for each next one.
    public var firstDelay: UInt32 = 500
    /// The longest Retry-After nook waits, seconds.
    public var maxRetryAfter: UInt32 = 30

    public init() {}
}

final class RegistryClient: @unchecked Sendable {
    /// The registry as the user wrote it (docker.io), for messages and
    /// credentials.
    let registry: String
    /// Where requests go (registry-1.docker.io for docker.io).
    let host: String
    let repository: String
    /// `pull` or `pull,push`.
    let actions: String
    let tls: TLSSettings
    /// Plain HTTP allowed: the registry is listed as insecure, or loopback.
    let plainAllowed: Bool
    let credential: Credential?
    let retry: RetryPolicy
    let cancel: CancelFlag

    private var mutex = pthread_mutex_t()
    private var scheme = "https"
    private var schemeSettled = false
    private var authorization: String?

    init(reference: Reference, actions: String, config: RegistryConfig, tlsCA: String?, credential: Credential?,
         retry: RetryPolicy, cancel: CancelFlag) {
        registry = reference.registry ?? ""
        host = reference.apiHost
        repository = reference.repository
        self.actions = actions
        let settings = config.settings(for: registry)
        tls = TLSSettings(caFile: tlsCA ?? settings.tlsCA, skipVerify: settings.insecure)
        plainAllowed = settings.insecure || RegistryConfig.isLoopback(host)
        self.credential = credential
        self.retry = retry
        self.cancel = cancel
        pthread_mutex_init(&mutex, nil)
    }

    deinit { pthread_mutex_destroy(&mutex) }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body()
    }

    /// `/v2/<repository>/<rest>` on the registry.
    func url(_ rest: String) -> String {
        let s = locked { scheme }
        return "\(s)://\(host)/v2/\(repository)/\(rest)"
    }

    // MARK: Requests

    /// What one attempt sends. Called again for every attempt, so that a
    /// download can ask for the rest of what it has.
    struct Attempt {
        var method = "GET"
        var path: String
        /// An absolute URL instead of path (an upload's Location).
        var absolute: String?
        var headers: [String] = []
        var body = HTTPRequest.Body.none
        var output: Int32 = -1
        var maxBody: UInt64 = 4 << 20
        var restartOnFull = false
        var progress: ProgressCounter?
    }

    /// Sends what `attempt` builds, with authentication, redirects and
    /// retries. `what` names the thing for messages ("manifest 3.20").
    /// `retryable` says whether a failed transfer may be tried again (a
    /// download can; an upload of a body that was consumed cannot).
    func send(_ what: String, retryable: Bool = true,
              _ attempt: (Int) throws(RegistryError) -> Attempt) throws(RegistryError) -> HTTPResponse {
        var tries = 0
        var authTried = false
        var lastProblem = ""
        while true {
            if cancel.isCancelled { throw .interrupted }
            tries += 1
            let a = try attempt(tries)
            var request = HTTPRequest(url: a.absolute ?? url(a.path))
            request.method = a.method
            request.headers = a.headers
            request.body = a.body
            request.output = a.output
            request.maxBody = a.maxBody
            request.restartOnFull = a.restartOnFull
            request.tls = tls
            request.cancel = cancel
            request.progress = a.progress
            switch followingRedirects(request, what: what) {
            case .failure(let failure):
                if failure.code == -ECANCELED || cancel.isCancelled { throw .interrupted }
                if failure.code == -ELIBACC {
                    throw .unsupported(failure.message, hint: "install it: sudo apt install libcurl4")
                }
                if failure.code == -EFBIG {
                    throw .tooLarge(registry: registry, what: what, limit: a.maxBody, option: nil)
                }
                // A registry that may speak plain HTTP and does not answer
                // HTTPS (TLS fails, or nothing listens on 443 of
                // localhost): plain HTTP, as docker does for these.
                if (failure.isTLS || (failure.isRefused && locked({ scheme }) == "https")) && plainAllowed
                    && !locked({ schemeSettled }) && !failure.isCertificate {
                    Log.info("\(registry) does not answer HTTPS; using plain HTTP (it is \(RegistryConfig.isLoopback(host) ? "a loopback address" : "listed as insecure"))")
                    locked {
                        scheme = "http"
                        schemeSettled = true
                    }
                    tries -= 1
                    continue
                }
                if failure.isCertificate {
                    throw .transfer(registry: registry, what: what, message: "TLS: \(failure.message)",
                                    hint: "if the registry's certificate is signed by your own authority, give it: "
                                        + "--tls-ca FILE, or tls-ca in registries.toml")
                }
                lastProblem = failure.message
                guard retryable && tries < retry.attempts else {
                    throw .transfer(registry: registry, what: what, message: failure.message + (tries > 1 ? " (tried \(tries) times)" : ""),
                                    hint: failure.isTLS ? nil : "check the network and that the registry runs; try again")
                }
                Log.info("\(registry): \(what): \(failure.message); trying again", ["try": String(tries + 1)])
                pause(milliseconds: backoff(tries))
                continue
            case .success(let response):
                locked { schemeSettled = true }
                if response.status == 401 && !authTried {
                    authTried = true
                    try authenticate(response, what: what)
                    tries -= 1
                    continue
                }
                if response.status == 401 {
                    throw .unauthorized(registry: registry, what: what, user: credential?.user, source: credential?.source)
                }
                if response.status == 429 || [500, 502, 503, 504].contains(response.status) {
                    lastProblem = "\(response.status)"
                    guard retryable && tries < retry.attempts else {
                        throw .status(registry: registry, what: what, status: response.status,
                                      message: response.message + (tries > 1 ? " (tried \(tries) times)" : ""))
                    }
                    var delay = backoff(tries)
                    if let after = response.header("retry-after").flatMap({ UInt32($0.trimming(" ")) }) {
                        delay = min(after, retry.maxRetryAfter) * 1000
                    }
                    Log.info("\(registry): \(what): the registry answered \(response.status); trying again in \(delay) ms",
                             ["try": String(tries + 1)])
                    pause(milliseconds: delay)
                    continue
                }
                _ = lastProblem
                return response
            }
        }
    }

    func backoff(_ tries: Int) -> UInt32 {
        retry.firstDelay << UInt32(min(tries - 1, 6))
    }

    func pause(milliseconds: UInt32) {
        var left = Int(milliseconds)
        while left > 0 && !cancel.isCancelled {
            usleep(UInt32(min(left, 100)) * 1000)
            left -= 100
        }
    }

    /// One request, following up to 5 redirects. A redirect to another
    /// origin (blob storage) loses the Authorization header; one from HTTPS
    /// to plain HTTP is refused unless that host may be spoken to plainly.
    func followingRedirects(_ first: HTTPRequest, what: String) -> Result<HTTPResponse, TransferFailure> {
        var request = first
        let origin = URLParts(first.url)?.origin
        // The registry's credentials go to the registry alone: an upload's
        // Location may name another host (a fresh try's registry sent the
        // push there, with the user's password).
        if let auth = locked({ authorization }), origin != nil, origin == URLParts(url(""))?.origin {
            request.headers.append("Authorization: \(auth)")
        }
        for _ in 0...5 {
            let result = HTTP.perform(request)
            guard case .success(let response) = result, [301, 302, 303, 307, 308].contains(response.status),
                  let location = response.header("location") else { return result }
            guard let from = URLParts(request.url), let to = from.resolve(location) else {
                return .failure(TransferFailure(code: -EIO, curlCode: 0, message: "redirected to '\(location)', "
                    + "which is not an http or https URL; refused", written: 0))
            }
            if from.scheme == "https" && to.scheme == "http" && !RegistryConfig.isLoopback(to.authority) {
                return .failure(TransferFailure(code: -EIO, curlCode: 0, message: "redirected from HTTPS to plain "
                    + "HTTP (\(to.origin)); refused", written: 0))
            }
            Log.debug("redirected", ["what": what, "to": to.origin])
            request.url = to.text
            if to.origin != origin {
                request.headers.removeAll { $0.lowercased().hasPrefix("authorization:") }
            }
            if response.status == 303 {
                request.method = "GET"
                request.body = .none
            }
        }
        return .failure(TransferFailure(code: -EIO, curlCode: 0, message: "more than 5 redirects", written: 0))
    }

    // MARK: Authentication

    /// Answers a 401: Bearer (a token from the realm, with the user's
    /// credentials if there are any) or Basic (the credentials).
    func authenticate(_ response: HTTPResponse, what: String) throws(RegistryError) {
        guard let header = response.header("www-authenticate"), let challenge = Challenge.parse(header) else {
            throw .unauthorized(registry: registry, what: what, user: credential?.user, source: credential?.source)
        }
        switch challenge.scheme {
        case "basic":
            guard let credential else { throw .unauthorized(registry: registry, what: what, user: nil, source: nil) }
            try requireSafeForSecrets(url(""), what: what)
            locked { authorization = credential.basic }
        case "bearer":
            let token = try fetchToken(challenge, what: what)
            locked { authorization = "Bearer " + token }
        default:
            throw .unsupported("\(registry) asks for \(challenge.scheme) authentication, which nook does not speak",
                               hint: "nook speaks Basic and Bearer (token) authentication")
        }
    }

    /// Credentials go only over TLS, or to hosts the user let nook speak
    /// plain HTTP to.
    func requireSafeForSecrets(_ url: String, what: String) throws(RegistryError) {
        guard let parts = URLParts(url) else { return }
        if parts.scheme == "http" && !plainAllowed && !RegistryConfig.isLoopback(parts.authority) {
            throw .protocolViolation(registry: registry, what: what,
                                     message: "the registry wants credentials sent over plain HTTP to \(parts.origin); refused")
        }
    }

    func fetchToken(_ challenge: Challenge, what: String) throws(RegistryError) -> String {
        guard let realm = challenge.parameters["realm"], var url = URLParts(realm) else {
            throw .protocolViolation(registry: registry, what: what, message: "its Bearer challenge has no usable realm")
        }
        var query: [String] = []
        if let service = challenge.parameters["service"] { query.append("service=" + queryEscape(service)) }
        var scopes = repository.isEmpty ? [] : ["repository:\(repository):\(actions)"]
        if let scope = challenge.parameters["scope"], !scopes.contains(scope) { scopes.append(scope) }
        query += scopes.map { "scope=" + queryEscape($0) }
        if credential != nil, let user = credential?.user { query.append("account=" + queryEscape(user)) }
        url.rest += (url.rest.contains("?") ? "&" : "?") + query.joined(separator: "&")
        var request = HTTPRequest(url: url.text)
        request.tls = tls
        request.cancel = cancel
        request.maxBody = 1 << 20
        if let credential {
            try requireSafeForSecrets(url.text, what: what)
            request.headers.append("Authorization: \(credential.basic)")
        }
        var tries = 0
        while true {
            tries += 1
            switch HTTP.perform(request) {
            case .failure(let failure):
                if failure.code == -ECANCELED { throw .interrupted }
                guard tries < retry.attempts, !failure.isTLS else {
                    throw .transfer(registry: registry, what: "token from \(url.origin)", message: failure.message,
                                    hint: failure.isCertificate ? "give the token server's authority: --tls-ca FILE" : nil)
                }
                pause(milliseconds: backoff(tries))
            case .success(let response):
                if response.status == 401 || response.status == 403 {
                    throw .unauthorized(registry: registry, what: what, user: credential?.user, source: credential?.source)
                }
                if (response.status == 429 || response.status >= 500) && tries < retry.attempts {
                    pause(milliseconds: backoff(tries))
                    continue
                }
                guard response.status == 200 else {
                    throw .status(registry: registry, what: "token from \(url.origin)", status: response.status,
                                  message: response.message)
                }
                struct Token: Decodable { var token: String?; var access_token: String? }
                guard let t = try? JSONParse.decode(Token.self, response.body), let token = t.token ?? t.access_token,
                      !token.isEmpty, token.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
                    throw .protocolViolation(registry: registry, what: "token from \(url.origin)",
                                             message: "the answer holds no token")
                }
                return token
            }
        }
    }

    /// `GET /v2/`: checks the registry answers and the credentials work
    /// (nook login).
    func ping() throws(RegistryError) {
        let response = try send("log in") { _ throws(RegistryError) in
            Attempt(path: "", absolute: locked { "\(scheme)://\(host)/v2/" })
        }
        guard response.status == 200 else {
            throw .status(registry: registry, what: "/v2/", status: response.status, message: response.message)
        }
    }
}

/// One `WWW-Authenticate` challenge: its scheme (lowercased) and parameters.
struct Challenge: Equatable {
    var scheme: String
    var parameters: [String: String]

    /// `Bearer realm="https://auth.example/token",service="registry",scope="repository:a:pull"`.
    static func parse(_ header: String) -> Challenge? {
        let text = header.trimming(" ")
        guard let space = text.firstIndex(of: " ") else {
            return text.isEmpty ? nil : Challenge(scheme: text.lowercased(), parameters: [:])
        }
        var parameters: [String: String] = [:]
        var rest = text[text.index(after: space)...]
        while !rest.isEmpty {
            rest = rest.drop { $0 == " " || $0 == "," }
            guard let eq = rest.firstIndex(of: "=") else { break }
            let key = rest[..<eq].trimming(" ").lowercased()
            rest = rest[rest.index(after: eq)...]
            var value = ""
            if rest.first == "\"" {
                rest = rest.dropFirst()
                var escaped = false
                while let c = rest.first {
                    rest = rest.dropFirst()
                    if escaped { value.append(c); escaped = false } else if c == "\\" { escaped = true }
                    else if c == "\"" { break } else { value.append(c) }
                }
            } else {
                let end = rest.firstIndex(of: ",") ?? rest.endIndex
                value = rest[..<end].trimming(" ")
                rest = rest[end...]
            }
            parameters[key] = value
        }
        return Challenge(scheme: text[..<space].lowercased(), parameters: parameters)
    }
}

enum JSONParse {
    static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) throws -> T {
        try JSONDecoder().decode(type, from: Data(bytes))
    }
}
