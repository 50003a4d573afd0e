#if canImport(Glibc)
import Glibc
#endif
import NookSpec
import NookSupport

/// nook's image store: blobs by digest, layers unpacked once and shared by
/// every image whose layers below are the same, and the records that name
/// them. Under `$XDG_DATA_HOME/nook/store`:
///
///     lock                    the store lock (see LockFile)
///     blobs/sha256/<hex>      manifests and configs, verified
///     layers/<chain>/diff     an unpacked layer: an overlayfs lower directory
///     layers/<chain>/layer.json, lock
///     images/<id>.json, .lock one image; its id is its config's digest
///     names.json              name -> image id
///     tmp/, trash/, locks/    imports in progress, removals, unpack locks
///
/// Every change is a rename of something complete into place, so a killed
/// nook leaves either the old state or the new one, plus leftovers in tmp/
/// that the next import or prune removes. Layer blobs are not kept once
/// unpacked: the unpacked layer is what runs, and keeping both would double
/// the store's size (containers/storage does the same).
public struct ImageStore: Sendable {
    public let root: String

    public init(root: String) {
        self.root = root
    }

    /// `$XDG_DATA_HOME/nook/store`, or `~/.local/share/nook/store`.
    public static func defaultRoot(environment: [String: String], home: String) -> String {
        if let data = environment["XDG_DATA_HOME"], data.hasPrefix("/") { return data + "/nook/store" }
        return home + "/.local/share/nook/store"
    }

    var lockPath: String { root + "/lock" }
    var blobsDirectory: String { root + "/blobs/sha256" }
    var layersDirectory: String { root + "/layers" }
    var imagesDirectory: String { root + "/images" }
    var namesPath: String { root + "/names.json" }
    var tmpDirectory: String { root + "/tmp" }
    var trashDirectory: String { root + "/trash" }
    var locksDirectory: String { root + "/locks" }

    func layerDirectory(_ chain: Digest) -> String { layersDirectory + "/" + chain.hex }
    func imagePath(_ id: Digest) -> String { imagesDirectory + "/" + id.hex + ".json" }
    func imageLockPath(_ id: Digest) -> String { imagesDirectory + "/" + id.hex + ".lock" }

    /// Creates the store's directories. The root is 0700 and kept so: layers
    /// hold the image's setuid files, owned by the user's ids, and another
    /// user who could reach one could run it as this user.
    func prepare() throws(StoreError) {
        do throws(SystemFailure) {
            let parent = FS.split(root).0
            if !parent.isEmpty { try FS.makeDirectories(parent, mode: 0o700) }
            for dir in [root, root + "/blobs", blobsDirectory, layersDirectory, imagesDirectory, tmpDirectory,
                        trashDirectory, locksDirectory, root + "/partial"] where mkdir(dir, 0o700) != 0 && errno != EEXIST {
                throw SystemFailure("create the store directory", path: dir)
            }
        } catch {
            throw .system(error)
        }
        var sb = stat()
        if stat(root, &sb) == 0 && sb.st_mode & 0o077 != 0 {
            chmod(root, 0o700)
            Log.warning("the image store \(root) was open to other users; made it private (0700)")
        }
    }

    /// Runs `body` holding the store lock.
    func locked<T>(exclusive: Bool, _ body: () throws(StoreError) -> T) throws(StoreError) -> T {
        let lock: LockFile
        do {
            lock = try LockFile(lockPath)
            try lock.lock(exclusive: exclusive)
        } catch {
            throw .system(error)
        }
        defer { lock.unlock() }
        return try body()
    }

    // MARK: Records

    /// The store's names, and what reading them found.
    struct NameTable {
        var names: [String: Digest] = [:]
        /// names.json was missing or could not be read, and the names were
        /// taken from the image records: a writer saves them again.
        var rebuilt = false
        /// Why names.json could not be read, when it was there.
        var damage: String?
        /// When rebuilt: images whose records do not keep their names (from
        /// a nook that did not), which may have had some.
        var unknown: Set<Digest> = []
    }

    func readNames() throws(StoreError) -> [String: Digest] { nameTable().names }

    /// names.json, or, when it is missing or damaged, the names each image's
    /// record keeps (a name two records claim goes to the one loaded last,
    /// as a load moves a name). A damaged names.json would otherwise stop
    /// every command that reads the store, with no way out but by hand.
    func nameTable() -> NameTable {
        var table = NameTable()
        if FS.exists(namesPath) {
            do throws(StoreError) {
                table.names = try JSON.decode([String: Digest].self, try FS.readFile(namesPath, max: 64 << 20),
                                              what: namesPath)
                return table
            } catch {
                table.damage = error.description
            }
        }
        table.rebuilt = true
        var claimed: [String: Int64] = [:]
        for id in imageIDs() {
            guard let record = try? readImage(id) else { continue }
            guard let names = record.names else {
                table.unknown.insert(id)
                continue
            }
            for name in names where claimed[name].map({ $0 < record.loaded }) ?? true {
                table.names[name] = id
                claimed[name] = record.loaded
            }
        }
        if table.damage != nil || !table.unknown.isEmpty {
            let lost = table.unknown.count
            Log.warnOnce(key: namesPath, (table.damage ?? "\(namesPath) is missing")
                + "; the names were taken from the image records instead"
                + (lost == 0 ? "" : " (\(lost) image\(lost == 1 ? "" : "s") loaded by an older nook keep\(lost == 1 ? "s" : "") "
                    + "none there: use \(lost == 1 ? "its id" : "their ids"), or load \(lost == 1 ? "it" : "them") again)")
                + ". Fix: nook image prune writes \(namesPath) again"
                + (table.damage == nil ? "" : ", keeping the damaged one as names.json.damaged"))
        }
        return table
    }

    /// Writes the names (under the exclusive store lock), and each changed
    /// image's own list of them in its record. After a rebuild, the images
    /// whose names were lost are marked so (prune keeps them), and a
    /// damaged names.json is kept beside as names.json.damaged.
    func saveNames(_ names: [String: Digest], table: NameTable, changed: Set<Digest>) throws(StoreError) {
        for id in changed.union(table.unknown) {
            guard var record = try? readImage(id) else { continue }
            let own = names.filter { $0.value == id }.keys.sorted()
            let lost: Bool? = own.isEmpty && (table.unknown.contains(id) || record.namesLost == true) ? true : nil
            guard record.names != own || record.namesLost != lost else { continue }
            record.names = own
            record.namesLost = lost
            do { try FS.writeAtomically(imagePath(id), JSON.encode(record, pretty: true), mode: 0o600) } catch {
                throw .system(error)
            }
        }
        if table.damage != nil && rename(namesPath, namesPath + ".damaged") != 0 {
            throw .system(SystemFailure("keep the damaged name list as", path: namesPath + ".damaged"))
        }
        try writeNames(names)
    }

    func writeNames(_ names: [String: Digest]) throws(StoreError) {
        do { try FS.writeAtomically(namesPath, JSON.encode(names, pretty: true), mode: 0o600) } catch {
            throw .system(error)
        }
    }

    func readImage(_ id: Digest) throws(StoreError) -> ImageRecord? {
        let path = imagePath(id)
        guard FS.exists(path) else { return nil }
        do {
            return try JSON.decode(ImageRecord.self, try FS.readFile(path, max: 64 << 20), what: path)
        } catch {
            if case .invalidImage(_, let message) = error { throw .damagedRecord(path: path, id: id, message: message) }
            throw error
        }
    }

    /// What the image records use: layers by chain id, and blobs; and the
    /// records that cannot be read, which may use any.
    func references() -> (layers: Set<Digest>, blobs: Set<Digest>, damaged: [Digest]) {
        var layers: Set<Digest> = [], blobs: Set<Digest> = [], damaged: [Digest] = []
        for id in imageIDs() {
            blobs.insert(id)
            do throws(StoreError) {
                guard let record = try readImage(id) else { continue }
                layers.formUnion(record.layers.map(\.chainID))
                if let m = record.manifest { blobs.insert(m) }
                // Layer blobs are kept for push and save.
                blobs.formUnion(record.layers.compactMap(\.blob))
            } catch {
                damaged.append(id)
            }
        }
        return (layers, blobs, damaged)
    }

    func imageIDs() -> [Digest] {
        FS.list(imagesDirectory).compactMap { name in
            name.hasSuffix(".json") ? Digest(hex: name.dropLast(5)) : nil
        }
    }

    func readLayer(_ chain: Digest) throws(StoreError) -> LayerRecord? {
        let path = layerDirectory(chain) + "/layer.json"
        guard FS.exists(path) else { return nil }
        return try JSON.decode(LayerRecord.self, try FS.readFile(path, max: 1 << 20), what: path)
    }

    func layerChains() -> [Digest] {
        FS.list(layersDirectory).compactMap { Digest(hex: $0) }
    }

    func stored(_ record: ImageRecord, names: [String: Digest]) -> StoredImage {
        let layers = record.layers.map { l in
            let meta = try? readLayer(l.chainID)
            return StoredLayer(chainID: l.chainID, diffID: l.diffID, directory: layerDirectory(l.chainID) + "/diff",
                               size: meta?.size ?? 0, entries: meta?.entries ?? 0, blob: l.blob)
        }
        return StoredImage(id: record.id, names: names.filter { $0.value == record.id }.keys.sorted(),
                           config: record.config, layers: layers, manifest: record.manifest, loaded: record.loaded,
                           source: record.source)
    }

    // MARK: Reading

    /// Every image, newest first.
    /// A record that cannot be read is left out, with a warning that names
    /// it and the fix.
    public func images() throws(StoreError) -> [StoredImage] {
        guard FS.exists(root) else { return [] }
        return try locked(exclusive: false) { () throws(StoreError) in
            let names = try readNames()
            var out: [StoredImage] = []
            for id in imageIDs() {
                do throws(StoreError) {
                    if let record = try readImage(id) { out.append(stored(record, names: names)) }
                } catch {
                    Log.warnOnce(key: imagePath(id), "\(error.description); left out. Fix: \(error.hint ?? "")")
                }
            }
            return out.sorted { ($0.loaded, $0.id) > ($1.loaded, $1.id) }
        }
    }

    /// The image `reference` names: a name (`alpine:3`, `localhost/app`,
    /// `docker.io/library/alpine:3`), a full id (`sha256:...`) or a unique
    /// prefix of one's hex digits.
    public func image(_ reference: String) throws(StoreError) -> StoredImage {
        guard FS.exists(root) else { throw .notFound(reference) }
        return try locked(exclusive: false) { () throws(StoreError) in
            let names = try readNames()
            let (id, _) = try resolve(reference, names: names)
            guard let record = try readImage(id) else { throw .notFound(reference) }
            return stored(record, names: names)
        }
    }

    /// The id `reference` names, and the name it matched (nil for an id).
    func resolve(_ reference: String, names: [String: Digest]) throws(StoreError) -> (Digest, String?) {
        if let name = ImageName.normalize(reference) {
            if let id = names[name] { return (id, name) }
            // A short name also finds an image made or loaded here under
            // localhost/ (`nook run app:1` for localhost/app:1), as podman
            // does; the name as docker reads it wins.
            if !reference.contains("/"), let id = names["localhost/" + name] { return (id, "localhost/" + name) }
        }
        var hex = Substring(reference)
        if hex.hasPrefix("sha256:") { hex = hex.dropFirst(7) }
        if hex.count >= 3, hex.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) {
            let matches = imageIDs().filter { $0.hex.hasPrefix(hex) }
            if matches.count == 1 { return (matches[0], nil) }
            if matches.count > 1 { throw .ambiguous(reference, matches: matches.map(\.short)) }
        }
        throw .notFound(reference)
    }

    // MARK: Running

    /// Marks the image in use for as long as the returned lease lives: prune
    /// and rm leave its layers (and, without --force, the image) alone. The
    /// runtime holds it for the sandbox's whole life.
    public func lease(_ image: StoredImage) throws(StoreError) -> ImageLease {
        try locked(exclusive: false) { () throws(StoreError) in
            // Removed (rm) since it was looked up: its layers may be gone too.
            guard FS.exists(imagePath(image.id)) else { throw .notFound(image.displayName) }
            var locks: [LockFile] = []
            do {
                let lock = try LockFile(imageLockPath(image.id))
                try lock.lock(exclusive: false)
                locks.append(lock)
                for layer in image.layers {
                    guard FS.exists(layerDirectory(layer.chainID)) else {
                        throw StoreError.damaged("layer \(layer.chainID) of image \(image.id.short) is missing")
                    }
                    let lock = try LockFile(layerDirectory(layer.chainID) + "/lock", create: false)
                    try lock.lock(exclusive: false)
                    locks.append(lock)
                }
            } catch let error as StoreError {
                throw error
            } catch let error as SystemFailure {
                throw .system(error)
            } catch {
                throw .damaged("\(error)")
            }
            return ImageLease(image: image, locks: locks)
        }
    }
}

/// An image as the store holds it.
public struct StoredImage: Equatable, Sendable {
    /// The digest of its config blob.
    public let id: Digest
    /// Its names, familiar form (`alpine:3`), sorted; empty when untagged.
    public let names: [String]
    public let config: ImageConfig
    /// Lowest first.
    public let layers: [StoredLayer]
    /// The manifest's digest, when it was loaded from an OCI layout.
    public let manifest: Digest?
    /// When it was loaded, seconds since the epoch.
    public let loaded: Int64
    public let source: String

    /// The layer directories, lowest first: overlayfs wants them the other
    /// way round in `lowerdir=` (the first is the top).
    public var layerDirectories: [String] { layers.map(\.directory) }

    /// Bytes of the files of all its layers.
    public var size: UInt64 { layers.reduce(0) { $0 + $1.size } }

    /// The name to show: the first name, or the short id.
    public var displayName: String { names.first ?? id.short }

    /// Why this host cannot run the image, or nil when it can.
    public func platformProblem(host: Platform = .current) -> String? {
        let image = Platform(architecture: config.architecture, os: config.os, variant: config.variant)
        guard image.os != host.os || image.architecture != host.architecture
            || (image.variant != nil && host.variant != nil && image.variant != host.variant) else { return nil }
        return "built for \(config.platform), not \(host.text)"
    }

    /// Refuses images for another architecture or OS, with a clear message.
    public func requireRunnable(host: Platform = .current) throws(StoreError) {
        if platformProblem(host: host) != nil {
            throw .foreignPlatform(image: displayName, platform: config.platform, host: host.text)
        }
    }
}

public struct StoredLayer: Equatable, Sendable {
    public let chainID: Digest
    public let diffID: Digest
    /// The unpacked layer, ready to be an overlayfs lower directory: owners
    /// as nook's root mapping (`nook unshare`) sees them, whiteouts as 0/0
    /// character devices, opaque directories marked `user.overlay.opaque=y`
    /// (mount with `userxattr`).
    public let directory: String
    public let size: UInt64
    public let entries: Int
    /// The digest of the blob it was imported from (compressed or not),
    /// kept in `blobs/` for push and save when the import could keep it.
    public let blob: Digest?
}

/// Holds an image in use. Its locks (shared flocks on the image and each
/// layer, close-on-exec) are released when the lease is deallocated or the
/// process ends.
public final class ImageLease: Sendable {
    public let image: StoredImage
    private let locks: [LockFile]

    init(image: StoredImage, locks: [LockFile]) {
        self.image = image
        self.locks = locks
    }

    /// The layer directories, lowest first.
    public var layerDirectories: [String] { image.layerDirectories }
}

// A LockFile's fields never change after init and flock(2) may be called
// from any thread; the lease only closes them in deinit.
extension LockFile: @unchecked Sendable {}

/// A platform in OCI's terms (`linux/amd64`, `linux/arm/v7`).
extension Platform {
    /// This host's, from uname(2).
    public static var current: Platform {
        var u = utsname()
        uname(&u)
        let machine = withUnsafePointer(to: &u.machine) {
            String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
        }
        switch machine {
        case "x86_64": return Platform(architecture: "amd64", os: "linux")
        case "aarch64", "arm64": return Platform(architecture: "arm64", os: "linux")
        case "armv7l": return Platform(architecture: "arm", os: "linux", variant: "v7")
        case "armv6l": return Platform(architecture: "arm", os: "linux", variant: "v6")
        case "i386", "i486", "i586", "i686": return Platform(architecture: "386", os: "linux")
        case "loongarch64": return Platform(architecture: "loong64", os: "linux")
        default: return Platform(architecture: machine, os: "linux")
        }
    }

    public var text: String { [os, architecture, variant].compactMap { $0 }.joined(separator: "/") }
}
