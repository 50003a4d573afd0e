/// Image names (references) as the distribution spec and Docker write them:
/// `[domain[:port]/]path[:tag][@digest]`. nook keeps them in their familiar
/// form: `docker.io/library/alpine` is `alpine:latest`, `docker.io/x/y` is
/// `x/y:latest`, other domains (`localhost/app:1`, `quay.io/a/b:2`) as
/// written, with `:latest` added when no tag or digest is given.
public enum ImageName {
    /// The familiar form of `text`, or nil when it is not a valid name.
    public static func normalize(_ text: String) -> String? {
        guard !text.isEmpty, text.utf8.count <= 512 else { return nil }
        var rest = Substring(text)
        var digest: Substring?
        if let at = rest.firstIndex(of: "@") {
            digest = rest[rest.index(after: at)...]
            rest = rest[..<at]
            guard let d = digest, Digest(String(d)) != nil else { return nil }
        }
        var tag: Substring?
        if let colon = rest.lastIndex(of: ":"), !rest[colon...].contains("/") {
            tag = rest[rest.index(after: colon)...]
            rest = rest[..<colon]
            guard let t = tag, isTag(t) else { return nil }
        }
        var parts = rest.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard !parts.isEmpty else { return nil }
        var domain: String?
        if parts.count > 1, parts[0].contains(".") || parts[0].contains(":") || parts[0] == "localhost" {
            domain = parts.removeFirst()
            guard isDomain(domain!) else { return nil }
        }
        guard !parts.isEmpty, parts.allSatisfy(isPathComponent) else { return nil }
        // An image id is never a name: "sha256:<64 hex>" or the 64 hex
        // digits alone would stand in for the image with that id (a fresh
        // try loaded an archive named after another image's id, and runs
        // by that id ran it). Docker refuses them as well.
        if domain == nil, parts.count == 1 {
            if parts[0] == "sha256", let tag, isHex64(tag) { return nil }
            if isHex64(Substring(parts[0])) { return nil }
        }
        if domain == "docker.io" || domain == "index.docker.io" { domain = nil }
        if domain == nil, parts.count == 2, parts[0] == "library" { parts.removeFirst() }
        var out = ([domain].compactMap { $0 } + parts).joined(separator: "/")
        // As the distribution spec and docker have it: a longer repository
        // name could be stored but never pushed (a fresh try).
        guard out.utf8.count <= 255 else { return nil }
        if let tag { out += ":" + tag } else if digest == nil { out += ":latest" }
        if let digest { out += "@" + digest }
        return out
    }

    /// A name an image from a file may be given: no digest in it. A name
    /// with `@sha256:...` is kept only from a pull, which checked it; an
    /// archive could otherwise pin alpine@sha256:X to anything (a fresh
    /// try ran such a planted image by a "pinned" name).
    public static func loadable(_ text: String) -> String? {
        guard let name = normalize(text), !name.contains("@") else { return nil }
        return name
    }

    /// `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
    package static func isPathComponent(_ s: String) -> Bool {
        let b = Array(s.utf8)
        guard let first = b.first, let last = b.last, isLowerAlnum(first), isLowerAlnum(last) else { return false }
        var i = 0
        while i < b.count {
            if isLowerAlnum(b[i]) {
                i += 1
                continue
            }
            var j = i
            while j < b.count && !isLowerAlnum(b[j]) { j += 1 }
            let sep = String(decoding: b[i..<j], as: UTF8.self)
            guard sep == "." || sep == "_" || sep == "__" || sep.allSatisfy({ $0 == "-" }) else { return false }
            i = j
        }
        return true
    }

    static func isLowerAlnum(_ c: UInt8) -> Bool { (c >= 97 && c <= 122) || (c >= 48 && c <= 57) }

    static func isHex64(_ s: Substring) -> Bool {
        s.utf8.count == 64 && s.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    /// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    package static func isTag(_ s: Substring) -> Bool {
        let b = Array(s.utf8)
        guard let first = b.first, b.count <= 128 else { return false }
        func word(_ c: UInt8) -> Bool { isLowerAlnum(c) || (c >= 65 && c <= 90) || c == 95 }
        return word(first) && b.dropFirst().allSatisfy { word($0) || $0 == 46 || $0 == 45 }
    }

    package static func isDomain(_ s: String) -> Bool {
        let hostPort = s.split(separator: ":", maxSplits: 1)
        if hostPort.count == 2 && (hostPort[1].isEmpty || !hostPort[1].allSatisfy(\.isNumber)) { return false }
        guard let host = hostPort.first, !host.isEmpty else { return false }
        return host.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            !label.isEmpty && !label.hasPrefix("-") && !label.hasSuffix("-")
                && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
        }
    }
}
