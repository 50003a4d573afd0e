import FoundationEssentials
import NookSpec

/// `layers/<chain id>/layer.json`: one unpacked layer.
struct LayerRecord: Codable, Equatable {
    /// The layer's chain id (image-spec config.md, "Layer ChainID"): its
    /// diffID and those of every layer below it. Layers are kept by chain
    /// id, not diffID, because what a layer unpacks to can depend on the
    /// layers below (hard links into them are copied).
    var chainID: Digest
    var diffID: Digest
    /// Blob digests (compressed or not) seen to decompress to diffID: an
    /// import of one of them needs only a hash of the blob.
    var blobs: [Digest]
    /// Bytes of its files.
    var size: UInt64
    var entries: Int
    /// When it was unpacked, seconds since the epoch.
    var unpacked: Int64
    /// The ids mapped when it was unpacked: its files' owners are right in
    /// sandboxes that map the same.
    var capacity: IDCapacity
}

/// `images/<id>.json`: one image. Its id is the digest of its config blob.
struct ImageRecord: Codable, Equatable {
    struct Layer: Codable, Equatable {
        var chainID: Digest
        var diffID: Digest
        var blob: Digest?
    }

    var id: Digest
    /// The manifest's digest (OCI layouts; docker-archives have none).
    var manifest: Digest?
    var config: ImageConfig
    /// Lowest first.
    var layers: [Layer]
    /// When it was loaded, seconds since the epoch.
    var loaded: Int64
    /// What it was loaded from, for inspect.
    var source: String
    /// Its names when they last changed: names.json is the store's index
    /// of them, and this its backup, from which a damaged names.json is
    /// rebuilt. nil in records of a nook from before it was kept.
    var names: [String]?
    /// Its names were lost with a damaged names.json before its record kept
    /// them: prune does not take it for an untagged image.
    var namesLost: Bool?
}

enum JSON {
    static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], what: String) throws(StoreError) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch {
            throw .invalidImage(source: what, message: "not the JSON expected: \(describe(error))")
        }
    }

    static func encode<T: Encodable>(_ value: T, pretty: Bool = false) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            : [.sortedKeys, .withoutEscapingSlashes]
        return (try? Array(encoder.encode(value))) ?? []
    }

    /// A decoding error in a sentence: which key, what was wrong.
    static func describe(_ error: any Error) -> String {
        guard let e = error as? DecodingError else { return "\(error)" }
        func path(_ c: DecodingError.Context) -> String {
            let p = c.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return p.isEmpty ? "" : " at \(p.hasPrefix(".") ? String(p.dropFirst()) : p)"
        }
        switch e {
        case .keyNotFound(let key, let c): return "missing \(key.stringValue)\(path(c))"
        case .typeMismatch(_, let c), .valueNotFound(_, let c): return "\(c.debugDescription)\(path(c))"
        case .dataCorrupted(let c): return "\(c.debugDescription)\(path(c))"
        @unknown default: return "\(error)"
        }
    }
}
