import Foundation
import NookSupport
import Testing

/// The checks on the directories nook keeps runtime state in.
struct PrivateDirectoryTests {
    func scratch() -> String {
        let dir = NSTemporaryDirectory() + "nook-pd-" + UUID().uuidString.prefix(8)
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// /tmp (sticky, writable by all) is a fine place for a directory of
    /// one's own, whoever runs this, root included (a run as root once
    /// took /tmp, its own, for "writable by every user" and refused it).
    @Test func aDirectoryOfOnesOwnBelowAStickyDirectoryIsTaken() throws {
        let base = scratch()
        chmod(base, 0o1777)
        try PrivateDirectory.ensure(base + "/mine/nook")
        var sb = stat()
        #expect(stat(base + "/mine/nook", &sb) == 0 && sb.st_mode & 0o777 == 0o700)
    }

    @Test func aDirectoryOthersMayWriteWithoutTheStickyBitIsRefused() {
        let base = scratch()
        chmod(base, 0o777)
        #expect(throws: UsageFailure.self) { try PrivateDirectory.ensure(base + "/mine") }
        #expect(!FileManager.default.fileExists(atPath: base + "/mine"), "nothing made below it")
    }

    @Test func aSymlinkOfTheUsersBelowTheirOwnIsRefused() throws {
        let base = scratch()
        chmod(base, 0o700)
        try FileManager.default.createDirectory(atPath: base + "/real", withIntermediateDirectories: true)
        symlink(base + "/real", base + "/link")
        #expect(throws: UsageFailure.self) { try PrivateDirectory.ensure(base + "/link/nook") }
    }
}
