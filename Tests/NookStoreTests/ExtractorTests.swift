import CNookSys
import Foundation
import Testing
@testable import NookStore

/// Unpacking one layer in this process, as the helper does inside the user
/// namespace: whiteouts, limits, digests and hostile entries. The layers'
/// owners are this process's own ids, so it runs with or without root.
@Suite struct ExtractorTests {
    let capacity = IDCapacity(uids: UInt64(getuid()) + 1, gids: UInt64(getgid()) + 1, user: "test")

    /// Scans and unpacks `tar` (gzip- or zstd-compressed when asked) into a
    /// new directory, as the store does.
    func unpack(_ tar: [UInt8], in temp: TempDirectory, lowers: [String] = [], limits: LayerLimits = LayerLimits(),
                compress: String? = nil, diffID: Digest? = nil) throws -> (String, UnpackReport) {
        var blob = tar
        if let compress { blob = pipe("/usr/bin/" + compress, ["-c"], input: tar) }
        let path = temp.write("blob-\(UUID().uuidString.prefix(6))", blob)
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        let layer = try Digest.of(blob)
        let scan = try LayerScan.run(fd: fd, copyTo: -1, layer: layer, limits: limits, capacity: capacity)
        let dest = temp.mkdir("layer-\(UUID().uuidString.prefix(6))")
        let job = UnpackJob(
            blob: path, destination: dest, lowers: lowers, layer: layer, diffID: diffID ?? scan.totals.tar, limits: limits,
            capacity: capacity, remapIDs: false,
            implicitDirectories: scan.implicitDirectories.map { PathNeed(path: $0.path, entry: $0.entry) },
            externalLinks: scan.externalLinks.map { PathNeed(path: $0.target, entry: $0.entry) }, report: dest + ".json",
            parent: getpid())
        return (dest, try Extractor(job: job).run())
    }

    func listing(_ dir: String) -> [String] {
        let e = FileManager.default.enumerator(atPath: dir)
        var out: [String] = []
        while let p = e?.nextObject() as? String { out.append(p) }
        return out.sorted()
    }

    func xattr(_ path: String, _ name: String) -> String? {
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 64)
        let n = nook_fgetxattr(fd, name, &buf, buf.count)
        return n < 0 ? nil : String(decoding: buf[0..<Int(n)], as: UTF8.self)
    }

    @Test func whiteoutsBecomeCharacterDevicesAndOpaqueMarkersAnXattrAndNeitherIsVisible() throws {
        let temp = TempDirectory()
        var tar = TarBuilder()
        tar.add(".wh.gone")
        tar.add("d/.wh..wh..opq")
        tar.add("d/kept", data: "k")
        tar.add("e/", .directory)
        tar.add("e/.wh.f")
        let (dir, _) = try unpack(tar.archive, in: temp)
        #expect(listing(dir) == ["d", "d/kept", "e", "e/f", "gone"])
        var sb = stat()
        #expect(lstat(dir + "/gone", &sb) == 0 && sb.st_mode & S_IFMT == S_IFCHR && sb.st_rdev == 0)
        #expect(lstat(dir + "/e/f", &sb) == 0 && sb.st_mode & S_IFMT == S_IFCHR && sb.st_rdev == 0)
        #expect(xattr(dir + "/d", "user.overlay.opaque") == "y")
        #expect(xattr(dir + "/e", "user.overlay.opaque") == nil)
    }

    @Test func modesOwnersLinksAndTimesAreKept() throws {
        let temp = TempDirectory()
        var tar = TarBuilder()
        tar.add("bin/", .directory, mode: 0o755)
        tar.add("bin/suid", data: "#!", mode: 0o4755)
        tar.add("bin/link", .hardlink, link: "bin/suid")
        tar.add("bin/sym", .symlink, link: "/does/not/exist")
        tar.add("run/p", .fifo, mode: 0o600)
        tar.add("etc/x", data: "x", pax: ["SCHILY.xattr.user.note": "hello"])
        let (dir, report) = try unpack(tar.archive, in: temp)
        var sb = stat()
        #expect(lstat(dir + "/bin/suid", &sb) == 0 && sb.st_mode & 0o7777 == 0o4755 && sb.st_nlink == 2)
        #expect(sb.st_mtim.tv_sec == 1_700_000_000)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: dir + "/bin/sym") == "/does/not/exist")
        #expect(lstat(dir + "/run/p", &sb) == 0 && sb.st_mode & S_IFMT == S_IFIFO && sb.st_mode & 0o777 == 0o600)
        #expect(xattr(dir + "/etc/x", "user.note") == "hello")
        #expect(report.entries == 6 && report.fileBytes == 3)
    }

    @Test func aSymlinkThenAnEntryThroughItIsRefusedAndNothingOutsideChanges() throws {
        let temp = TempDirectory()
        let outside = temp.mkdir("outside")
        var tar = TarBuilder()
        tar.add("x", .symlink, link: outside)
        tar.add("x/pwned", data: "p")
        #expect {
            _ = try unpack(tar.archive, in: temp)
        } throws: { error in
            "\(error)".contains("entry 'x/pwned': written through the symlink x of the same layer")
        }
        #expect(listing(outside).isEmpty)
    }

    @Test func anEntryThroughALowerLayersSymlinkIsRefusedBeforeAnythingIsCreated() throws {
        let temp = TempDirectory()
        let outside = temp.mkdir("outside")
        let lower = temp.mkdir("lower")
        symlink("../outside", lower + "/x")
        var tar = TarBuilder()
        tar.add("first", data: "1")
        tar.add("x/pwned", data: "p")
        #expect {
            _ = try unpack(tar.archive, in: temp, lowers: [lower])
        } throws: { error in
            "\(error)".contains("entry 'x/pwned': written through the symlink x of a lower layer")
        }
        #expect(listing(outside).isEmpty)
        #expect(!listing(temp.path).contains { $0.hasSuffix("/first") }, "an entry was created before the refusal")
    }

    @Test func aHardLinkToALowerLayersFileIsACopyOfIt() throws {
        let temp = TempDirectory()
        let lower = temp.mkdir("lower")
        _ = temp.mkdir("lower/usr/bin")
        _ = temp.write("lower/usr/bin/tool", Array("tool".utf8))
        chmod(lower + "/usr/bin/tool", 0o751)
        var tar = TarBuilder()
        tar.add("usr/bin/alias", .hardlink, link: "usr/bin/tool")
        let (dir, _) = try unpack(tar.archive, in: temp, lowers: [lower])
        #expect(try String(contentsOfFile: dir + "/usr/bin/alias", encoding: .utf8) == "tool")
        var sb = stat()
        #expect(lstat(dir + "/usr/bin/alias", &sb) == 0 && sb.st_mode & 0o7777 == 0o751)
    }

    @Test func aHardLinkToWhatNoLayerHasIsRefused() throws {
        let temp = TempDirectory()
        var tar = TarBuilder()
        tar.add("h", .hardlink, link: "etc/shadow")
        #expect {
            _ = try unpack(tar.archive, in: temp, lowers: [temp.mkdir("lower")])
        } throws: { error in
            "\(error)".contains("a hard link to etc/shadow, which is neither in this layer nor below it")
        }
    }

    @Test(arguments: ["gzip", "zstd"])
    func aCompressedBombStopsAtTheLimitWhileStreaming(compressor: String) throws {
        let temp = TempDirectory()
        var tar = TarBuilder()
        tar.add("zeros", data: String(repeating: "\0", count: 8 << 20))
        let limits = LayerLimits(maxLayerBytes: 1 << 20, maxEntries: 100, maxEntryBytes: 1 << 30)
        #expect {
            _ = try unpack(tar.archive, in: temp, limits: limits, compress: compressor)
        } throws: { error in
            "\(error)".contains("passed the limit of 1 MiB (--max-layer-bytes)")
        }
    }

    @Test func theEntryCountAndPerEntrySizeAreCapped() throws {
        let temp = TempDirectory()
        var many = TarBuilder()
        for i in 0..<20 { many.add("f\(i)") }
        #expect {
            _ = try unpack(many.archive, in: temp, limits: LayerLimits(maxEntries: 10))
        } throws: { error in
            "\(error)".contains("the number of entries passed the limit of 10 entries (--max-entries)")
        }
        var big = TarBuilder()
        big.add("huge", data: "abc", size: 1 << 40)
        #expect {
            _ = try unpack(big.archive, in: temp, limits: LayerLimits(maxEntryBytes: 1 << 30))
        } throws: { error in
            "\(error)".contains("the size of huge passed the limit of 1 GiB (--max-entry-bytes)")
        }
    }

    @Test func theScanHashesTheBlobAsStoredAndTheDecompressedTar() throws {
        let temp = TempDirectory()
        var tar = TarBuilder()
        tar.add("a", data: "hello")
        let gz = pipe("/usr/bin/gzip", ["-c"], input: tar.archive)
        let path = temp.write("blob", gz)
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        let scan = try LayerScan.run(fd: fd, copyTo: -1, layer: try Digest.of(gz), limits: LayerLimits(), capacity: capacity)
        #expect(scan.totals.stored == (try Digest.of(gz)) && scan.totals.storedBytes == UInt64(gz.count))
        #expect(scan.totals.tar == (try Digest.of(tar.archive)) && scan.totals.tarBytes == UInt64(tar.archive.count))
    }

    @Test func contentThatIsNotItsDiffIDIsReportedWithBothDigests() throws {
        let temp = TempDirectory()
        var tar = TarBuilder()
        tar.add("a", data: "hello")
        let wrong = try Digest.of(Array("other".utf8))
        #expect {
            _ = try unpack(tar.archive, in: temp, diffID: wrong)
        } throws: { error in
            "\(error)".contains("expected \(wrong), got \(try Digest.of(tar.archive))")
        }
    }

    @Test func ownersBeyondTheMappableIdsAreCountedBeforeExtraction() throws {
        var tar = TarBuilder()
        tar.add("mine")
        tar.add("far", uid: 172_761_424)
        tar.add("farther", uid: 5, gid: 4_294_967_294)
        let temp = TempDirectory()
        let path = temp.write("blob", tar.archive)
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        let small = IDCapacity(uids: 65537, gids: 65537, user: "u")
        let scan = try LayerScan.run(fd: fd, copyTo: -1, layer: try Digest.of(tar.archive), limits: LayerLimits(),
                                     capacity: small)
        #expect(scan.unmappedCount == (getuid() < 65537 ? 2 : 3))
        #expect(scan.maxUID == 172_761_424 && scan.maxGID == 4_294_967_294)
    }
}
