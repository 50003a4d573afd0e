/// `User` of an image or `--user`: `name`, `uid`, `name:group`, `uid:gid`,
/// `name:gid`, `uid:group`, resolved against the root's /etc/passwd and
/// /etc/group as docker and podman do: a name must be found; a number need
/// not be; a user's primary group is its passwd entry's unless one is named;
/// its supplementary groups are those that list it.
public struct ResolvedUser: Equatable, Sendable {
    public var uid: UInt32
    public var gid: UInt32
    public var groups: [UInt32]
    /// The home directory its passwd entry gives (HOME inside), if any.
    public var home: String? = nil
}

extension Resolver {
    public static func resolveUser(_ spec: String, passwd: String?, group: String?, where origin: String)
        throws(ResolveError) -> ResolvedUser
    {
        let parts = spec.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard let userPart = parts.first, !userPart.isEmpty, parts.count <= 2, parts.count == 1 || !parts[1].isEmpty else {
            throw ResolveError("\(origin) \(spec): expected user[:group]", hint: "a name or a number, as in app or 1000:1000")
        }
        let users = table(passwd)
        let groups = table(group)
        var uid: UInt32
        var gid: UInt32 = 0
        var name: String?
        var home: String?
        if let n = number(userPart) {
            uid = n
            if let entry = users.first(where: { UInt32($0.count > 2 ? $0[2] : "") == n }) {
                name = entry[0]
                gid = entry.count > 3 ? UInt32(entry[3]) ?? 0 : 0
                home = entry.count > 5 ? entry[5] : nil
            }
        } else {
            guard let entry = users.first(where: { $0[0] == userPart }), entry.count > 3,
                  let u = UInt32(entry[2]), let g = UInt32(entry[3]) else {
                throw ResolveError("\(origin) \(spec): no user \(userPart) in the root's /etc/passwd",
                                   hint: passwd == nil ? "the root has no readable /etc/passwd; give a number instead"
                                       : "give a number, or a name that /etc/passwd lists")
            }
            uid = u
            gid = g
            name = userPart
            home = entry.count > 5 ? entry[5] : nil
        }
        if parts.count == 2 {
            let groupPart = parts[1]
            if let n = number(groupPart) {
                gid = n
            } else {
                guard let entry = groups.first(where: { $0[0] == groupPart }), entry.count > 2, let g = UInt32(entry[2]) else {
                    throw ResolveError("\(origin) \(spec): no group \(groupPart) in the root's /etc/group",
                                       hint: "give a number, or a name that /etc/group lists")
                }
                gid = g
            }
        }
        var extra: [UInt32] = []
        if let name {
            for entry in groups where entry.count > 3 {
                let members = entry[3].split(separator: ",").map(String.init)
                if members.contains(name), let g = UInt32(entry[2]), g != gid, !extra.contains(g) { extra.append(g) }
            }
        }
        let usable = home.flatMap { $0.hasPrefix("/") && !$0.contains("\0") ? $0 : nil }
        return ResolvedUser(uid: uid, gid: gid, groups: extra, home: usable)
    }

    /// A uid or gid written in digits only (UInt32 would take "+5").
    static func number(_ text: String) -> UInt32? {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        return UInt32(text)
    }

    /// The colon-separated fields of each line. Lines split by scalars and
    /// lose a trailing \r: "\r\n" is one Character, so a split on
    /// Characters would not see the line ends of a file written on Windows.
    static func table(_ text: String?) -> [[String]] {
        (text ?? "").unicodeScalars.split(separator: "\n").compactMap { raw in
            let line = String(String.UnicodeScalarView(raw)).trimming("\r")
            let fields = line.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            return fields.count >= 3 && !fields[0].hasPrefix("#") ? fields : nil
        }
    }
}
