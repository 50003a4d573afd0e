#if canImport(Glibc)
import Glibc
#endif

/// How many ids the user can give files: their own id plus their
/// subordinate ids, as nook maps them with the user as root (0..count-1).
public struct IDCapacity: Equatable, Sendable, Codable {
    public var uids: UInt64
    public var gids: UInt64
    /// Whose ids (for messages).
    public var user: String

    public init(uids: UInt64, gids: UInt64, user: String) {
        self.uids = uids
        self.gids = gids
        self.user = user
    }

    /// The overflow id (nobody) when it is mapped, else 0: where
    /// `--remap-ids` sends owners that cannot be mapped.
    var remapUID: UInt32 { uids > 65534 ? 65534 : 0 }
    var remapGID: UInt32 { gids > 65534 ? 65534 : 0 }
}

/// One owner outside the mappable ids.
struct UnmappedOwner: Codable, Equatable {
    var file: String
    var kind: String
    var id: Int64
}

/// What the first pass over a layer learned, before anything is extracted:
/// its digests, its size, its shape, and the owners it needs.
struct LayerScan {
    var totals: StreamTotals
    var entries = 0
    /// Sum of the files' sizes.
    var fileBytes: UInt64 = 0
    var maxUID: Int64 = 0
    var maxGID: Int64 = 0
    /// The first file owned by an id outside the capacity, and how many are.
    var firstUnmapped: UnmappedOwner?
    var unmappedCount = 0
    var implicitDirectories: [(path: String, entry: String)] = []
    var externalLinks: [(target: String, entry: String)] = []

    /// Reads the whole layer from fd (copying it to copyTo when >= 0):
    /// every name, link and owner is checked and every limit enforced while
    /// streaming; nothing is written but the copy.
    static func run(fd: Int32, copyTo: Int32, layer: Digest, limits: LayerLimits,
                    capacity: IDCapacity) throws(StoreError) -> LayerScan {
        let stream: TarStream
        do {
            stream = try TarStream(fd: fd, copyTo: copyTo, maxTarBytes: limits.maxLayerBytes)
        } catch {
            throw streamFailure(error, layer: layer, limits: limits)
        }
        var shape = LayerShape()
        var scan = LayerScan(totals: StreamTotals(stored: layer, storedBytes: 0, tar: layer, tarBytes: 0))
        while true {
            let next: TarEntry?
            do { next = try stream.next() } catch { throw streamFailure(error, layer: layer, limits: limits) }
            guard let e = next else { break }
            scan.entries += 1
            if scan.entries > limits.maxEntries {
                throw .limit(layer: layer, what: "the number of entries", limit: UInt64(limits.maxEntries),
                             option: "--max-entries")
            }
            do {
                let (path, kind) = try LayerRules.classify(e)
                _ = try shape.add(path: path, kind: kind, entry: e.path)
                try scan.account(e, kind: kind, layer: layer, limits: limits, capacity: capacity)
            } catch let refusal as EntryRefusal {
                throw .hostileEntry(layer: layer, entry: refusal.entry, reason: refusal.reason)
            } catch let error as StoreError {
                throw error
            } catch {
                throw .hostileEntry(layer: layer, entry: e.path, reason: "\(error)")
            }
        }
        do { scan.totals = try stream.finish() } catch { throw streamFailure(error, layer: layer, limits: limits) }
        scan.implicitDirectories = shape.implicitDirectories
        scan.externalLinks = shape.externalLinks
        return scan
    }

    /// Sizes and owners of one entry.
    mutating func account(_ e: TarEntry, kind: EntryKind, layer: Digest, limits: LayerLimits,
                          capacity: IDCapacity) throws(StoreError) {
        switch kind {
        case .file:
            guard e.size >= 0, UInt64(e.size) <= limits.maxEntryBytes else {
                throw .limit(layer: layer, what: "the size of \(e.path)", limit: limits.maxEntryBytes,
                             option: "--max-entry-bytes")
            }
            fileBytes += UInt64(e.size)
            if fileBytes > limits.maxLayerBytes {
                throw .limit(layer: layer, what: "the size of its files together", limit: limits.maxLayerBytes,
                             option: "--max-layer-bytes")
            }
        case .hardlink, .whiteout, .opaque, .ignored, .device, .socket:
            return
        default:
            break
        }
        maxUID = max(maxUID, e.uid)
        maxGID = max(maxGID, e.gid)
        let outside = [("uid", e.uid, capacity.uids), ("gid", e.gid, capacity.gids)]
            .filter { $0.1 < 0 || UInt64($0.1) >= $0.2 }
        if let (kind, id, _) = outside.first {
            unmappedCount += 1
            if firstUnmapped == nil { firstUnmapped = UnmappedOwner(file: e.path, kind: kind, id: id) }
        }
    }

    static func streamFailure(_ error: StreamError, layer: Digest, limits: LayerLimits) -> StoreError {
        if error.overLimit {
            return .limit(layer: layer, what: "the decompressed size", limit: limits.maxLayerBytes,
                          option: "--max-layer-bytes")
        }
        if error.errno == ELIBACC { return .unsupported(error.message, hint: nil) }
        return .invalidImage(source: "layer \(layer)", message: "not a readable tar stream: \(error.message)")
    }
}
