#if canImport(Glibc)
import Glibc
#endif
import NookSupport

/// What `rm` did to one reference.
public enum Removal: Equatable, Sendable {
    /// The name was removed; the image keeps its other names.
    case untagged(String)
    /// The image was removed (with its names), id given.
    case removed(Digest)
}

/// What `prune` removed.
public struct PruneResult: Equatable, Sendable {
    public var images: [Digest] = []
    public var layers = 0
    public var blobs = 0
    /// Bytes of the layers' files.
    public var bytes: UInt64 = 0
    /// Unreferenced layers left because a sandbox uses them.
    public var layersInUse = 0
    /// What interrupted imports left (their staging directories).
    public var leftovers = 0
}

// Removing. Reference counts are not stored: a layer's users are the image
// records that list it (counted afresh, under the store lock, each time) and
// the processes holding its lock shared (running sandboxes, imports). A
// layer goes only when it has neither, decided with a non-blocking exclusive
// lock; removal is a rename into trash/, and emptying the trash runs the
// helper in the user namespace, since layers hold files of subordinate ids.
extension ImageStore {
    /// Removes images or names. A name goes on its own while the image has
    /// others; an id (or an image's last name) removes the image. An image
    /// a sandbox uses is refused unless `force`, which removes its record
    /// and names now and its layers once no sandbox uses them (prune).
    public func remove(_ references: [String], force: Bool, context: HelperContext) throws(StoreError) -> [Removal] {
        guard FS.exists(root) else { throw .notFound(references.first ?? "") }
        defer { emptyTrash(context: context) }
        return try locked(exclusive: true) { () throws(StoreError) -> [Removal] in
            let table = nameTable()
            var names = table.names
            var out: [Removal] = []
            var removed: [Digest] = []
            var untagged: Set<Digest> = []
            for reference in references {
                let (id, name) = try resolve(reference, names: names)
                if let name, names.values.filter({ $0 == id }).count > 1 {
                    names[name] = nil
                    untagged.insert(id)
                    out.append(.untagged(name))
                    continue
                }
                // A record that cannot be read is removed all the same: that
                // is the way out its error gives.
                do throws(StoreError) {
                    guard try readImage(id) != nil else { throw .notFound(reference) }
                } catch {
                    guard case .damagedRecord = error else { throw error }
                }
                if !force, try isInUse(id) { throw .inUse(reference) }
                for (n, i) in names where i == id { names[n] = nil }
                removed.append(id)
                out.append(.removed(id))
            }
            for id in removed {
                unlink(imagePath(id))
                unlink(imageLockPath(id))
            }
            try saveNames(names, table: table, changed: untagged)
            _ = try collect()
            return out
        }
    }

    /// Removes untagged images no sandbox uses, then every layer and blob
    /// no image references and no sandbox uses, and leftovers of killed
    /// imports.
    public func prune(context: HelperContext) throws(StoreError) -> PruneResult {
        guard FS.exists(root) else { return PruneResult() }
        let leftovers = removeLeftovers(context: context)
        defer { emptyTrash(context: context) }
        return try locked(exclusive: true) { () throws(StoreError) -> PruneResult in
            // A names.json that was missing or damaged is written again from
            // the records; records from before they kept their names get
            // them (a later rebuild then loses none).
            let table = nameTable()
            let tagged = Set(table.names.values)
            var images: [Digest] = []
            // An image whose names are unknown (its record keeps none and
            // names.json was lost) is not taken for an untagged one.
            for id in imageIDs() where !tagged.contains(id) && !table.unknown.contains(id) {
                if (try? readImage(id))??.namesLost == true { continue }
                if try isInUse(id) { continue }
                unlink(imagePath(id))
                unlink(imageLockPath(id))
                images.append(id)
            }
            let unnamed = Set(imageIDs().filter { (try? readImage($0))??.names == nil })
            if table.rebuilt || !unnamed.isEmpty {
                try saveNames(table.names, table: table, changed: table.rebuilt ? unnamed.subtracting(table.unknown) : unnamed)
                if table.damage != nil { Log.warning("wrote \(namesPath) again from the image records") }
            }
            var result = try collect()
            result.images = images
            result.leftovers = leftovers
            return result
        }
    }

    /// True when a sandbox holds the image (its lock is held shared).
    func isInUse(_ id: Digest) throws(StoreError) -> Bool {
        guard FS.exists(imageLockPath(id)) else { return false }
        do {
            let lock = try LockFile(imageLockPath(id), create: false)
            return try !lock.tryLock(exclusive: true)
        } catch {
            throw .system(error)
        }
    }

    /// Moves unreferenced, unused layers to the trash and removes
    /// unreferenced blobs. Called with the store lock held exclusive.
    func collect() throws(StoreError) -> PruneResult {
        var result = PruneResult()
        let (usedLayers, usedBlobs, damaged) = references()
        // A record that cannot be read may use any layer: none is collected
        // until it is removed (which its error says how to do).
        if !damaged.isEmpty {
            Log.warning("layers and blobs no image uses are kept while \(damaged.map { imagePath($0) }.joined(separator: ", ")) "
                + "cannot be read. Fix: nook image rm \(damaged.map(\.short).joined(separator: " ")), and load or pull "
                + "\(damaged.count == 1 ? "that image" : "those images") again")
        }
        for chain in layerChains() where damaged.isEmpty && !usedLayers.contains(chain) {
            let dir = layerDirectory(chain)
            if let lock = try? LockFile(dir + "/lock", create: false) {
                guard (try? lock.tryLock(exclusive: true)) == true else {
                    result.layersInUse += 1
                    continue
                }
            }
            let size = (try? readLayer(chain))??.size ?? 0
            if moveToTrash(dir) {
                result.layers += 1
                result.bytes += size
            }
        }
        for name in FS.list(blobsDirectory) where damaged.isEmpty {
            guard let digest = Digest(hex: name), !usedBlobs.contains(digest) else { continue }
            if unlink(blobsDirectory + "/" + name) == 0 { result.blobs += 1 }
        }
        // Partly downloaded blobs that no pull is writing (it holds a lock).
        for name in FS.list(partialDirectory) {
            let path = partialDirectory + "/" + name
            if let lock = try? LockFile(path, create: false), (try? lock.tryLock(exclusive: true)) == true {
                unlink(path)
            }
        }
        for name in FS.list(locksDirectory) where name.hasPrefix("unpack-") {
            // Only an import holding it may keep it; a free one is stale.
            if let lock = try? LockFile(locksDirectory + "/" + name, create: false),
               (try? lock.tryLock(exclusive: true)) == true {
                unlink(locksDirectory + "/" + name)
            }
        }
        return result
    }

    /// Renames `path` into the trash; false when it could not.
    @discardableResult
    func moveToTrash(_ path: String) -> Bool {
        let target = "\(trashDirectory)/\(FS.split(path).1)-\(UInt32.random(in: 0...UInt32.max))"
        if rename(path, target) == 0 { return true }
        Log.debug("could not move to the trash", ["path": path, "error": Errno.current.description])
        return false
    }

    /// Moves the directories of imports that were killed (their owner lock
    /// is free) to the trash, and empties it.
    @discardableResult
    func removeLeftovers(context: HelperContext) -> Int {
        var count = 0
        for name in FS.list(tmpDirectory) {
            let dir = tmpDirectory + "/" + name
            // An import whose process lives may not have locked its owner
            // file yet: it made the file, and the lock comes next (a fresh
            // try's concurrent pulls lost their import directory there).
            // (A zombie, a killed import its parent has yet to reap, has ended.)
            if name.hasPrefix("import-"), let pid = Int32(name.dropFirst(7).prefix { $0 != "-" }), ProcStat.runs(pid) {
                continue
            }
            guard let lock = try? LockFile(dir + "/owner", create: false) else {
                // Not an import's directory, or one that has not made its lock yet.
                continue
            }
            if (try? lock.tryLock(exclusive: true)) == true {
                moveToTrash(dir)
                count += 1
            }
        }
        emptyTrash(context: context)
        return count
    }

    /// Removes what is in the trash through the helper (files of subordinate
    /// ids). Failing leaves it for the next prune, with a warning.
    func emptyTrash(context: HelperContext) {
        let items = FS.list(trashDirectory).map { trashDirectory + "/" + $0 }
        guard !items.isEmpty else { return }
        do {
            let status = try context.runHelper(["remove"] + items)
            if status == 0 { return }
            Log.warning("could not remove \(items.count) item\(items.count == 1 ? "" : "s") in \(trashDirectory) "
                + "(the helper exited with status \(status)); nook image prune tries again")
        } catch {
            Log.warning("could not remove what is in \(trashDirectory): \(error); nook image prune tries again")
        }
    }
}
