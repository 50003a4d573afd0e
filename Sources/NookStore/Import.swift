#if canImport(Glibc)
import Glibc
#endif
import NookSpec
import NookSupport

/// How `nook image load` should load.
public struct LoadOptions: Sendable {
    /// Names to give the image (familiar form, see ImageName).
    public var tags: [String] = []
    /// Give files owned by ids the user cannot map to the overflow id
    /// (nobody, 65534) instead of refusing the image.
    public var remapIDs = false
    public var limits = LayerLimits()

    public init() {}
}

/// What work on layers needs from its caller: the ids the user can map,
/// and a way to run nook's store helper (`nook __store ARGS`) as root of a
/// user namespace that maps them, as Launcher.unshare does. Passing it in
/// keeps NookStore below NookRuntime.
public struct HelperContext: Sendable {
    public var capacity: IDCapacity
    /// Runs the helper with `arguments` (after `nook __store`) and returns
    /// its exit status (128 + N when killed by signal N).
    public var runHelper: @Sendable (_ arguments: [String]) throws -> Int32

    public init(capacity: IDCapacity, runHelper: @escaping @Sendable ([String]) throws -> Int32) {
        self.capacity = capacity
        self.runHelper = runHelper
    }
}

public struct LoadResult: Sendable {
    public var images: [StoredImage]
    /// One line per thing that could not be kept, for the user.
    public var warnings: [String]
}

extension ImageStore {
    /// Loads the images of an OCI image layout directory, or of a
    /// `docker save` / `podman save` / OCI archive (tar, optionally
    /// compressed). Everything is verified, and every layer checked, before
    /// the first file is extracted; a failure leaves the store as it was.
    public func load(_ path: String, options: LoadOptions, context: HelperContext) throws(StoreError) -> LoadResult {
        try prepare()
        removeLeftovers(context: context)
        let session = try ImportSession(store: self, options: options, context: context)
        defer { session.finish() }
        do throws(StoreError) {
            let source = try session.openSource(path)
            var plans = try session.plans(source)
            if !options.tags.isEmpty {
                guard plans.count == 1 else {
                    throw .invalidImage(source: path, message: "--tag names one image; this holds \(plans.count)")
                }
                plans[0].names += options.tags.filter { !plans[0].names.contains($0) }
            }
            for i in plans.indices { try session.verify(&plans[i], source: source) }
            try session.checkOwners(plans)
            for i in plans.indices { try session.unpack(&plans[i], source: source) }
            let images = try session.commit(plans)
            return LoadResult(images: images, warnings: session.warnings)
        } catch {
            session.rollBack()
            throw error
        }
    }
}

/// One import: its directory under tmp/ (locked for its life, so that a
/// later import can tell a leftover of a killed one), the layers it holds
/// in use, and the layers it unpacked (removed again if it fails).
final class ImportSession {
    let store: ImageStore
    let options: LoadOptions
    let context: HelperContext
    let directory: String
    let owner: LockFile
    var leases: [Digest: LockFile] = [:]
    var unpacked: [Digest] = []
    var warnings: [String] = []
    var copies = 0
    /// Layers verified by this import, by chain id.
    var verified: [Digest: LayerPlan] = [:]

    init(store: ImageStore, options: LoadOptions, context: HelperContext) throws(StoreError) {
        self.store = store
        self.options = options
        self.context = context
        directory = "\(store.tmpDirectory)/import-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        do throws(SystemFailure) {
            guard mkdir(directory, 0o700) == 0 else { throw SystemFailure("create", path: directory) }
            owner = try LockFile(directory + "/owner")
            _ = try owner.tryLock(exclusive: true)
        } catch {
            throw .system(error)
        }
    }

    func openSource(_ path: String) throws(StoreError) -> ImportSource {
        var sb = stat()
        guard stat(path, &sb) == 0 else { throw .system(SystemFailure("read the image", path: path)) }
        if sb.st_mode & S_IFMT == S_IFDIR {
            let fd: Int32
            do { fd = try FS.open(path, O_RDONLY | O_DIRECTORY) } catch { throw .system(error) }
            return ImportSource(label: path, kind: .directory(fd: fd))
        }
        try ImportSource.requireArchiveFile(path, sb.st_mode)
        return try ImportSource.stage(archive: path, into: directory, limits: options.limits)
    }

    func plans(_ source: ImportSource) throws(StoreError) -> [ImagePlan] {
        let plans: [ImagePlan]
        if source.has("manifest.json") {
            plans = try Plans.docker(source)
        } else if source.has("index.json") {
            plans = try Plans.oci(source)
        } else {
            throw .invalidImage(source: source.label, message: "neither an OCI image layout (index.json) nor a "
                + "docker-archive (manifest.json)")
        }
        let kind = source.has("manifest.json") ? "a docker-archive" : source.isStaged ? "an OCI archive" : "an OCI image layout"
        Log.info("\(source.label) is \(kind) of \(plans.count) image\(plans.count == 1 ? "" : "s"): "
            + plans.map { "\($0.label) (\($0.layers.count) layer\($0.layers.count == 1 ? "" : "s"))" }.joined(separator: ", "))
        return plans
    }

    // MARK: Verifying

    /// Checks every layer blob against its digest and size, and every new
    /// layer's entries, names, links, sizes and owners, without extracting.
    func verify(_ plan: inout ImagePlan, source: ImportSource) throws(StoreError) {
        for i in plan.layers.indices {
            try verify(&plan.layers[i], of: plan, source: source)
        }
    }

    func verify(_ layer: inout LayerPlan, of plan: ImagePlan, source: ImportSource) throws(StoreError) {
        // Tags of one layout share layers: each blob is checked once.
        if let done = verified[layer.chainID], done.path == layer.path, done.declared == layer.declared,
           done.size == layer.size {
            (layer.blob, layer.staged, layer.scan, layer.present) = (done.blob, done.staged, done.scan, done.present)
            return
        }
        defer { if layer.blob != nil { verified[layer.chainID] = layer } }
        let what = "layer \(layer.number) of \(plan.label) (\(plan.source): \(layer.path))"
        let record = try store.readLayer(layer.chainID)

        // The blob as stored: hashed, and copied into the import when it is
        // new and not already the import's own copy.
        let staged = source.stagedPath(layer.path)
        let copy = record == nil && staged == nil ? "\(directory)/blob-\(next())" : nil
        let input = try source.open(layer.path)
        defer { close(input) }
        var output: Int32 = -1
        if let copy {
            do { output = try FS.open(copy, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600, what: "create") } catch {
                throw .system(error)
            }
        }
        defer { if output >= 0 { close(output) } }
        let (digest, size) = try Digest.of(fd: input, copyTo: output, max: options.limits.maxLayerBytes, what: what)
        if let declared = layer.declared, declared != digest {
            throw .digestMismatch(what: what, expected: declared, actual: digest)
        }
        if let expected = layer.size, UInt64(expected) != size {
            throw .sizeMismatch(what: what, expected: expected, actual: size)
        }
        layer.blob = digest
        if let record, record.blobs.contains(digest) {
            layer.present = true
            return
        }

        // What it decompresses to: the diffID, and everything the extractor
        // will meet.
        let path = copy ?? staged
        let fd: Int32
        if let path {
            do { fd = try FS.open(path, O_RDONLY) } catch { throw .system(error) }
        } else {
            fd = try source.open(layer.path)
        }
        defer { close(fd) }
        let scan = try LayerScan.run(fd: fd, copyTo: -1, layer: layer.label, limits: options.limits,
                                     capacity: context.capacity)
        guard scan.totals.stored == digest else {
            throw .digestMismatch(what: "\(what), read a second time", expected: digest, actual: scan.totals.stored)
        }
        guard scan.totals.tar == layer.diffID else {
            throw .digestMismatch(what: "\(what), uncompressed (its diffID in the config)", expected: layer.diffID,
                                  actual: scan.totals.tar)
        }
        layer.scan = scan
        layer.staged = path
        layer.present = record != nil
    }

    func next() -> Int {
        copies += 1
        return copies
    }

    /// Refuses, before anything is extracted, an image with files owned by
    /// ids the user cannot map (CASES C42), unless --remap-ids was given.
    func checkOwners(_ plans: [ImagePlan]) throws(StoreError) {
        for plan in plans {
            // Layers already in the store were unpacked before; only new ones count.
            let scans = plan.layers.filter { !$0.present }.compactMap { l in l.scan.map { (l, $0) } }
            guard let (layer, scan) = scans.first(where: { $0.1.firstUnmapped != nil }),
                  let first = scan.firstUnmapped else { continue }
            let count = scans.reduce(0) { $0 + $1.1.unmappedCount }
            if options.remapIDs { continue }
            let needed = first.kind == "uid" ? scans.map(\.1.maxUID).max() ?? first.id
                : scans.map(\.1.maxGID).max() ?? first.id
            throw .idsOutOfRange(IDRangeProblem(
                kind: first.kind, id: first.id, file: first.file, layer: layer.label,
                needed: UInt64(max(needed, first.id, 0)) + 1,
                available: first.kind == "uid" ? context.capacity.uids : context.capacity.gids,
                user: context.capacity.user, count: count))
        }
    }

    // MARK: Unpacking

    func unpack(_ plan: inout ImagePlan, source: ImportSource) throws(StoreError) {
        var reports: [UnpackReport] = []
        var lowers: [String] = []
        for i in plan.layers.indices {
            if let report = try ensure(&plan.layers[i], of: plan, lowers: lowers, source: source) {
                reports.append(report)
            }
            lowers.append(store.layerDirectory(plan.layers[i].chainID) + "/diff")
        }
        warnings += ImportSession.warnings(for: plan.label, reports, capacity: context.capacity)
    }

    /// Holds the layer in use if it is in the store: true when it is.
    func leaseIfPresent(_ chain: Digest) throws(StoreError) -> Bool {
        if leases[chain] != nil { return true }
        return try store.locked(exclusive: false) { () throws(StoreError) -> Bool in
            guard FS.exists(store.layerDirectory(chain) + "/layer.json") else { return false }
            do throws(SystemFailure) {
                let lock = try LockFile(store.layerDirectory(chain) + "/lock", create: false)
                try lock.lock(exclusive: false)
                leases[chain] = lock
            } catch {
                throw .system(error)
            }
            return true
        }
    }

    /// Makes sure the layer is unpacked in the store; returns the report
    /// when this import unpacked it.
    func ensure(_ layer: inout LayerPlan, of plan: ImagePlan, lowers: [String],
                source: ImportSource) throws(StoreError) -> UnpackReport? {
        if try leaseIfPresent(layer.chainID) {
            Log.info("layer \(layer.number) of \(plan.label): already in the store", ["chain": layer.chainID.short])
            return nil
        }
        let unpackLock: LockFile
        do { unpackLock = try LockFile.exclusive("\(store.locksDirectory)/unpack-\(layer.chainID.hex)") } catch {
            throw .system(error)
        }
        defer { unpackLock.unlock() }
        if try leaseIfPresent(layer.chainID) { return nil }
        if layer.scan == nil {
            // It was in the store when verified and has been pruned since.
            layer.present = false
            try verify(&layer, of: plan, source: source)
            try checkOwners([ImagePlan(names: plan.names, manifest: nil, config: plan.config, configFile: plan.configFile,
                                       layers: [layer], source: plan.source)])
        }
        let blob = try blobForHelper(layer, of: plan, source: source)
        let (staging, lock, report) = try runHelper(on: layer, blob: blob, lowers: lowers)
        try commitLayer(layer, staging: staging, lock: lock, report: report)
        Log.info("layer \(layer.number) of \(plan.label): unpacked \(report.entries) entries, \(Size.text(report.fileBytes))",
                 ["chain": layer.chainID.short])
        return report
    }

    /// A verified copy of the layer's blob that the helper can read.
    func blobForHelper(_ layer: LayerPlan, of plan: ImagePlan, source: ImportSource) throws(StoreError) -> String {
        if let staged = layer.staged { return staged }
        // A blob of an OCI layout is read in place only when the store
        // already had the layer; it is gone now, so copy and check it again.
        guard let blob = layer.blob else { throw .damaged("layer \(layer.chainID) was not verified") }
        let path = "\(directory)/blob-\(next())"
        let input = try source.open(layer.path)
        defer { close(input) }
        let out: Int32
        do { out = try FS.open(path, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600) } catch { throw .system(error) }
        defer { close(out) }
        let (digest, _) = try Digest.of(fd: input, copyTo: out, max: options.limits.maxLayerBytes, what: layer.path)
        guard digest == blob else {
            throw .digestMismatch(what: "layer \(layer.number) of \(plan.label)", expected: blob, actual: digest)
        }
        return path
    }

    /// Unpacks the layer into a staging directory of the import through the
    /// helper; returns the directory, its lock (held shared) and the report.
    func runHelper(on layer: LayerPlan, blob: String, lowers: [String]) throws(StoreError)
        -> (staging: String, lock: LockFile, report: UnpackReport)
    {
        guard let scan = layer.scan else { throw .damaged("layer \(layer.chainID) was verified without a scan") }
        let staging = "\(directory)/layer-\(layer.chainID.hex)"
        let job = UnpackJob(
            blob: blob, destination: staging + "/diff", lowers: lowers, layer: layer.label, diffID: layer.diffID,
            limits: options.limits, capacity: context.capacity, remapIDs: options.remapIDs,
            implicitDirectories: scan.implicitDirectories.map { PathNeed(path: $0.path, entry: $0.entry) },
            externalLinks: scan.externalLinks.map { PathNeed(path: $0.target, entry: $0.entry) },
            report: staging + "/report.json", parent: getpid())
        let lock: LockFile
        do throws(SystemFailure) {
            guard mkdir(staging, 0o700) == 0 else { throw SystemFailure("create", path: staging) }
            guard mkdir(staging + "/diff", 0o755) == 0 else { throw SystemFailure("create", path: staging + "/diff") }
            lock = try LockFile(staging + "/lock")
            try lock.lock(exclusive: false)
            try FS.writeAtomically(staging + "/job.json", JSON.encode(job), mode: 0o600)
        } catch {
            throw .system(error)
        }

        Log.debug("unpacking", ["layer": layer.label.description, "chain": layer.chainID.short])
        let status: Int32
        do {
            status = try context.runHelper(["unpack", staging + "/job.json"])
        } catch let error as StoreError {
            throw error
        } catch let error as any NookFailure {
            throw .unpack(layer: layer.label, message: error.description)
        } catch {
            throw .unpack(layer: layer.label, message: "\(error)")
        }
        let report = (try? FS.readFile(job.report, max: 16 << 20)).flatMap {
            try? JSON.decode(UnpackReport.self, $0, what: job.report)
        }
        if let failure = report?.failure { throw failure.error(layer: layer.label) }
        guard status == 0, let report else {
            throw .unpack(layer: layer.label, message: status > 128 ? "the unpacking helper was killed by signal \(status - 128)"
                : "the unpacking helper failed (exit status \(status))")
        }
        return (staging, lock, report)
    }

    /// Moves an unpacked layer into the store with its record, keeping it
    /// leased by this import.
    func commitLayer(_ layer: LayerPlan, staging: String, lock: LockFile, report: UnpackReport) throws(StoreError) {
        let record = LayerRecord(chainID: layer.chainID, diffID: layer.diffID, blobs: layer.blob.map { [$0] } ?? [],
                                 size: report.fileBytes, entries: report.entries, unpacked: Int64(time(nil)),
                                 capacity: context.capacity)
        let target = store.layerDirectory(layer.chainID)
        do throws(SystemFailure) {
            try FS.writeAtomically(staging + "/layer.json", JSON.encode(record, pretty: true), mode: 0o600)
            unlink(staging + "/job.json")
            unlink(staging + "/report.json")
            guard rename(staging, target) == 0 else {
                let failure = SystemFailure("move the unpacked layer into", path: target)
                // Another import unpacked it too: theirs is as good as ours.
                guard errno == EEXIST || errno == ENOTEMPTY else { throw failure }
                store.moveToTrash(staging)
                guard (try? leaseIfPresent(layer.chainID)) == true else { throw failure }
                return
            }
        } catch {
            throw .system(error)
        }
        leases[layer.chainID] = lock
        unpacked.append(layer.chainID)
    }

    // MARK: Committing

    /// Records the images and their names, all under the store lock, each
    /// record replaced whole.
    func commit(_ plans: [ImagePlan]) throws(StoreError) -> [StoredImage] {
        try store.locked(exclusive: true) { () throws(StoreError) -> [StoredImage] in
            let table = store.nameTable()
            var names = table.names
            var records: [ImageRecord] = []
            do {
                for plan in plans {
                    try writeBlob(plan.config.digest, plan.config.bytes)
                    if let m = plan.manifest { try writeBlob(m.digest, m.bytes) }
                    // Layer blobs are kept, verified, for push and save: the
                    // import's own copy is moved into blobs/.
                    for layer in plan.layers {
                        guard let blob = layer.blob, let staged = layer.staged,
                              staged.hasPrefix(directory + "/") else { continue }
                        let path = store.blobsDirectory + "/" + blob.hex
                        if !FS.exists(path) && rename(staged, path) != 0 {
                            throw SystemFailure("keep the layer blob", path: path)
                        }
                    }
                    for layer in plan.layers where layer.present && layer.scan != nil {
                        // A blob seen for the first time for a layer the store had.
                        if var record = try store.readLayer(layer.chainID), let blob = layer.blob,
                           !record.blobs.contains(blob) {
                            record.blobs.append(blob)
                            try FS.writeAtomically(store.layerDirectory(layer.chainID) + "/layer.json",
                                                   JSON.encode(record, pretty: true), mode: 0o600)
                        }
                    }
                    let id = plan.config.digest
                    for name in plan.names { names[name] = id }
                    let record = ImageRecord(
                        id: id, manifest: plan.manifest?.digest, config: plan.configFile.imageConfig,
                        layers: plan.layers.map { .init(chainID: $0.chainID, diffID: $0.diffID, blob: $0.blob) },
                        loaded: Int64(time(nil)), source: plan.source,
                        names: names.filter { $0.value == id }.keys.sorted())
                    try FS.writeAtomically(store.imagePath(record.id), JSON.encode(record, pretty: true), mode: 0o600)
                    records.append(record)
                }
                // The images a name moved away from keep their records' lists right too.
                let moved = table.names.filter { names[$0.key] != $0.value }.map(\.value)
                try store.saveNames(names, table: table, changed: Set(records.map(\.id) + moved))
            } catch let error as StoreError {
                throw error
            } catch let error as SystemFailure {
                throw .system(error)
            } catch {
                throw .damaged("\(error)")
            }
            var seen: Set<Digest> = []
            return records.filter { seen.insert($0.id).inserted }.map { store.stored($0, names: names) }
        }
    }

    /// Stores a verified blob under its digest; a blob already there is
    /// kept (it has the same content: it was verified when it came).
    func writeBlob(_ digest: Digest, _ bytes: [UInt8]) throws(SystemFailure) {
        let path = store.blobsDirectory + "/" + digest.hex
        if FS.exists(path) { return }
        try FS.writeAtomically(path, bytes, mode: 0o600)
    }

    // MARK: Ending

    /// After a failure: the layers this import unpacked go to the trash
    /// unless another image or import uses them.
    func rollBack() {
        leases.removeAll()
        guard !unpacked.isEmpty else { return }
        try? store.locked(exclusive: true) { () throws(StoreError) in
            let used = store.references().layers
            for chain in unpacked where !used.contains(chain) {
                guard let lock = try? LockFile(store.layerDirectory(chain) + "/lock", create: false),
                      (try? lock.tryLock(exclusive: true)) == true else { continue }
                store.moveToTrash(store.layerDirectory(chain))
            }
        }
    }

    /// Releases what the import holds and removes its directory. Staging
    /// directories of layers that failed hold files owned by subordinate
    /// ids, which only the helper can remove: they go through the trash.
    func finish() {
        leases.removeAll()
        for name in FS.list(directory) where name.hasPrefix("layer-") {
            store.moveToTrash(directory + "/" + name)
        }
        let (parent, name) = FS.split(directory)
        let fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            try? FS.removeTree(fd, name)
            close(fd)
        }
        store.emptyTrash(context: context)
    }

    /// One warning per kind of thing unpacking could not keep.
    static func warnings(for image: String, _ reports: [UnpackReport], capacity: IDCapacity) -> [String] {
        var out: [String] = []
        func merged(_ pick: (UnpackReport) -> UnpackReport.Loss) -> UnpackReport.Loss {
            var all = UnpackReport.Loss()
            for r in reports {
                let loss = pick(r)
                for name in loss.examples { all.add(name, reason: loss.reason) }
                all.count += loss.count - loss.examples.count
            }
            return all
        }
        let devices = merged(\.devices)
        if devices.count > 0 {
            out.append("\(image): skipped \(devices.count) device node\(devices.count == 1 ? "" : "s") (a user "
                + "namespace cannot create them; sandboxes get their own /dev): \(devices.list)")
        }
        let sockets = merged(\.sockets)
        if sockets.count > 0 {
            out.append("\(image): skipped \(sockets.count) socket file\(sockets.count == 1 ? "" : "s") (only a running "
                + "server can make a working one): \(sockets.list)")
        }
        var attributes: [String: UnpackReport.Loss] = [:]
        for r in reports {
            for (name, loss) in r.xattrsNotKept {
                for path in loss.examples { attributes[name, default: .init()].add(path, reason: loss.reason) }
                attributes[name]!.count += loss.count - loss.examples.count
            }
        }
        if !attributes.isEmpty {
            let parts = attributes.keys.sorted().map { name in
                let loss = attributes[name]!
                return "\(name) on \(loss.list)\(loss.reason.map { " (\($0))" } ?? "")"
            }
            out.append("\(image): could not keep extended attributes: \(parts.joined(separator: "; "))")
        }
        let remapped = merged(\.remapped)
        if remapped.count > 0 {
            let to = capacity.uids > 65534 ? "nobody (65534)" : "root (0), the only id you have"
            out.append("\(image): \(remapped.count) file\(remapped.count == 1 ? "" : "s") owned by ids outside the "
                + "\(capacity.uids) you can map were given to \(to) (--remap-ids), e.g. \(remapped.examples[0])")
        }
        return out
    }
}
