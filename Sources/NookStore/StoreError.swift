import NookSupport

/// Why an image operation failed. Each case says what was being done, to
/// which image, layer or entry, and what the user can do.
public enum StoreError: NookFailure {
    /// Content did not hash to the digest that names it.
    case digestMismatch(what: String, expected: Digest, actual: Digest)
    /// Content was not the size its descriptor gives.
    case sizeMismatch(what: String, expected: Int64, actual: UInt64)
    /// The input is not a well-formed image (manifest, index, archive).
    case invalidImage(source: String, message: String)
    /// A layer entry that would reach outside its layer or collides oddly.
    case hostileEntry(layer: Digest, entry: String, reason: String)
    /// A layer passed a size or count limit.
    case limit(layer: Digest?, what: String, limit: UInt64, option: String)
    /// Files owned by ids the user cannot map.
    case idsOutOfRange(IDRangeProblem)
    /// Something in an image nook does not handle (a media type, a digest
    /// algorithm).
    case unsupported(String, hint: String?)
    case notFound(String)
    case ambiguous(String, matches: [String])
    /// The image is in use by a running sandbox.
    case inUse(String)
    /// The image's platform is not this host's.
    case foreignPlatform(image: String, platform: String, host: String)
    /// The unpacking helper failed on a layer.
    case unpack(layer: Digest, message: String)
    /// The store's files are damaged (a record names a missing layer).
    case damaged(String)
    /// An image's record cannot be read.
    case damagedRecord(path: String, id: Digest, message: String)
    case system(SystemFailure)

    public var description: String {
        switch self {
        case .digestMismatch(let what, let expected, let actual):
            return "\(what): digest mismatch: expected \(expected), got \(actual); nothing was stored"
        case .sizeMismatch(let what, let expected, let actual):
            return "\(what): size mismatch: expected \(expected) bytes, got \(actual); nothing was stored"
        case .invalidImage(let source, let message):
            return "\(source): \(message)"
        case .hostileEntry(let layer, let entry, let reason):
            return "layer \(layer) entry '\(entry)': \(reason); the image was refused and nothing was extracted"
        case .limit(let layer, let what, let limit, let option):
            let at = layer.map { "layer \($0): " } ?? ""
            let shown = option == "--max-entries" ? "\(limit) entries" : Size.binary(limit)
            return "\(at)\(what) passed the limit of \(shown) (\(option)); the import stopped and nothing was kept"
        case .idsOutOfRange(let problem):
            return problem.description
        case .unsupported(let message, _):
            return message
        case .notFound(let name):
            return "no image named \(name)"
        case .ambiguous(let name, let matches):
            return "\(name) names more than one image: \(matches.joined(separator: ", "))"
        case .inUse(let name):
            return "image \(name) is in use by a running sandbox"
        case .foreignPlatform(let image, let platform, let host):
            return "image \(image) is for \(platform); this host runs \(host)"
        case .unpack(let layer, let message):
            return "unpack layer \(layer): \(message)"
        case .damaged(let message):
            return "the image store is damaged: \(message)"
        case .damagedRecord(let path, _, let message):
            return "the image store is damaged: the record \(path) is \(message)"
        case .system(let failure):
            return failure.description
        }
    }

    public var hint: String? {
        switch self {
        case .digestMismatch, .sizeMismatch:
            return "the image file is damaged or was changed; get it again from its source"
        case .hostileEntry:
            return "the layer was built to write outside its directory or is malformed; do not use this image"
        case .limit(_, _, _, let option):
            return "if you trust the image, raise the limit: nook image load \(option) "
                + (option == "--max-entries" ? "N" : "SIZE")
        case .idsOutOfRange(let problem):
            return problem.hint
        case .unsupported(_, let hint):
            return hint
        case .notFound:
            return "see: nook image ls"
        case .ambiguous:
            return "give more of the id, or a name"
        case .inUse:
            return "stop the sandbox first, or use --force: the names go now, the layers when no sandbox uses them "
                + "(nook image prune)"
        case .foreignPlatform:
            return "load the image built for this host's architecture"
        case .damaged:
            return "remove the image (nook image rm) and load it again"
        case .damagedRecord(_, let id, _):
            return "remove it with nook image rm \(id.short) (nook image prune then removes the layers only it "
                + "used), and load or pull the image again"
        case .system(let failure):
            return failure.hint
        default:
            return nil
        }
    }
}

/// Files owned by ids outside what the user can map, found before anything
/// was extracted.
public struct IDRangeProblem: Equatable, Sendable, CustomStringConvertible {
    /// "uid" or "gid".
    public var kind: String
    public var id: Int64
    public var file: String
    public var layer: Digest
    /// How many ids of this kind the image needs (its highest id + 1).
    public var needed: UInt64
    /// How many the user has (their own id and their subordinate ids).
    public var available: UInt64
    public var user: String
    /// How many files are owned by unmappable ids, in every layer.
    public var count: Int

    public var description: String {
        let others = count > 1 ? " (and \(count - 1) more file\(count > 2 ? "s" : ""))" : ""
        return "layer \(layer) file \(file) is owned by \(kind) \(id)\(others), outside the ids you can map: the image "
            + "needs \(needed) \(kind)s, you have \(available) (your own and your subordinate ids); nothing was extracted"
    }

    /// Where --remap-ids sends such files for a user with this many ids.
    var remapTarget: String { available > 65534 ? "nobody (65534)" : "root (0), the only id you have" }

    public var hint: String {
        let flag = kind == "uid" ? "--add-subuids" : "--add-subgids"
        let remap = "load with --remap-ids to give such files to \(remapTarget)"
        // A range of a few million ids is a reasonable thing to add; ids in
        // the billions (172761424, 4294967294) are an image's mistake.
        guard needed <= 1 << 24 else { return "ids that high cannot reasonably be mapped: \(remap)" }
        let more = needed - min(needed, available)
        return "give \(user) at least \(more) more subordinate ids (sudo usermod \(flag) START-END \(user), "
            + "a free range of that size; see /etc/subuid and /etc/subgid), or \(remap)"
    }
}

/// Sizes as people read them, and as options give them.
public enum Size {
    /// `1.5 GB`, `340 kB`, `12 B` (decimal units, as podman prints them).
    public static func text(_ bytes: UInt64) -> String {
        let units = ["B", "kB", "MB", "GB", "TB", "PB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1000 && unit < units.count - 1 {
            value /= 1000
            unit += 1
        }
        if unit == 0 { return "\(bytes) B" }
        let rounded = (value * 10).rounded() / 10
        let text = rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
        return "\(text) \(units[unit])"
    }

    /// `10 MiB`, `32 GiB`: limits, in the binary units their options take.
    public static func binary(_ bytes: UInt64) -> String {
        for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] where bytes >= 1 << UInt64(shift) {
            let value = Double(bytes) / Double(UInt64(1) << UInt64(shift))
            let rounded = (value * 10).rounded() / 10
            return (rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)) + " " + unit
        }
        return "\(bytes) B"
    }

    /// Parses `100`, `64k`, `10M`, `2G`, `1T` (binary multiples, case
    /// insensitive, optional trailing `B` or `iB`).
    public static func parse(_ text: String) -> UInt64? {
        var s = Substring(text.lowercased())
        if s.hasSuffix("ib") { s = s.dropLast(2) } else if s.hasSuffix("b") { s = s.dropLast() }
        var multiplier: UInt64 = 1
        if let last = s.last, let power = ["k": 1, "m": 2, "g": 3, "t": 4][String(last)] {
            multiplier = 1 << (10 * UInt64(power))
            s = s.dropLast()
        }
        guard let n = UInt64(s) else { return nil }
        let (product, overflow) = n.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : product
    }
}
