@testable import NookSpec
import Foundation
import Testing

/// `--user` and an image's `User`, looked up as docker and podman do.
struct ImageUserTests {
    let passwd = """
        root:x:0:0:root:/root:/bin/sh
        # a comment
        app:x:1000:1000::/srv:/bin/sh
        web:x:33:33::/var/www:/bin/sh
        broken:x:notanumber:1::/:/bin/sh
        """
    let group = """
        root:x:0:
        app:x:1000:
        extra:x:2000:app,web
        www-data:x:33:
        audio:x:29:web,app
        """

    @Test(arguments: [
        ("app", 1000, 1000, [2000, 29]),
        ("1000", 1000, 1000, [2000, 29]),
        ("app:extra", 1000, 2000, [29]),
        ("app:33", 1000, 33, [2000, 29]),
        ("1000:www-data", 1000, 33, [2000, 29]),
        ("4242", 4242, 0, []),
        ("4242:7", 4242, 7, []),
        ("0", 0, 0, []),
    ])
    func aSpecResolves(spec: String, uid: UInt32, gid: UInt32, groups: [UInt32]) throws {
        let user = try Resolver.resolveUser(spec, passwd: passwd, group: group, where: "--user")
        #expect(user.uid == uid && user.gid == gid && user.groups == groups, "\(spec)")
    }

    @Test(arguments: [
        ("nobody", "no user nobody in the root's /etc/passwd"),
        ("app:nogroup", "no group nogroup in the root's /etc/group"),
        ("broken", "no user broken"),
        ("", "expected user[:group]"),
        (":1", "expected user[:group]"),
        ("app:", "expected user[:group]"),
        ("a:b:c", "no user a"),
    ])
    func aBadSpecNamesWhatIsWrong(spec: String, message: String) {
        #expect {
            _ = try Resolver.resolveUser(spec, passwd: passwd, group: group, where: "--user")
        } throws: { error in
            "\(error)".contains(message) && "\(error)".contains("--user")
        }
    }

    @Test func theHomeIsThePasswdEntrysAndANumberNeedsDigitsOnly() throws {
        #expect(try Resolver.resolveUser("app", passwd: passwd, group: group, where: "--user").home == "/srv")
        #expect(try Resolver.resolveUser("4242", passwd: passwd, group: group, where: "--user").home == nil)
        #expect(throws: ResolveError.self) { try Resolver.resolveUser("+1000", passwd: passwd, group: group, where: "--user") }
        let crlf = passwd.replacingOccurrences(of: "\n", with: "\r\n")
        #expect(try Resolver.resolveUser("web", passwd: crlf, group: group, where: "--user").uid == 33)
    }

    @Test func withoutAPasswdFileANumberStillWorksAndANameSaysWhy() throws {
        let user = try Resolver.resolveUser("7:8", passwd: nil, group: nil, where: "the image's User")
        #expect(user == ResolvedUser(uid: 7, gid: 8, groups: [], home: nil))
        #expect {
            _ = try Resolver.resolveUser("app", passwd: nil, group: nil, where: "the image's User")
        } throws: { error in
            (error as? ResolveError)?.hint?.contains("no readable /etc/passwd") == true
        }
    }
}
