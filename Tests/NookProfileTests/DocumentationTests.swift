import Foundation
import Testing

@testable import NookProfile

/// man/nook-profile.5 documents every key the schema accepts.
struct DocumentationTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    @Test func everyKeyAndSectionIsInTheManPage() throws {
        let man = try String(contentsOf: Self.root.appendingPathComponent("man/nook-profile.5"), encoding: .utf8)
        let lines = man.split(separator: "\n").map(String.init)
        for section in Schema.sections {
            #expect(man.contains(".SS [\(section)]"), "section [\(section)] is not documented")
        }
        for key in Schema.keys {
            let documented = lines.contains { line in
                line == ".B \(key.name)" || line == ".B [\(key.section).\(key.name)]"
                    || line.hasPrefix(".BR \(key.name) ")
                    || line.hasPrefix(".B \(key.name) ")
                    || (line.hasPrefix(".BR ") && line.split(separator: " ").contains(Substring(key.name)))
            }
            #expect(documented, "\(key.path) is not documented as a .TP entry")
        }
    }

    @Test func everyStockProfileIsValidAndHasAHeaderComment() throws {
        let dir = Self.root.appendingPathComponent("Profiles")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".toml") }
            .sorted()
        #expect(names == ["build.toml", "ci.toml", "default.toml", "net.toml", "strict.toml"])
        for name in names {
            let text = try String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8)
            #expect(text.hasPrefix("# \(name.dropLast(5)): "), "\(name) has no header")
            #expect(
                text.contains("# For: ") && text.contains("# Allows: "),
                "\(name) does not say who it is for and what it allows")
        }
    }

    @Test func theShownProfileIsItselfAValidProfileWithTheSameRequest() throws {
        let search = ProfileSearchPath([ProfileDirectory(Self.root.appendingPathComponent("Profiles").path, .stock)])
        let variables = ProfileVariables.caller(
            uid: 1000, gid: 1000, user: "u", home: "/home/u", cwd: "/w",
            environment: ["TERM": "xterm", "LANG": "C"])
        let loader = ProfileLoader(search: search, variables: variables, home: "/home/u", cwd: "/w")
        for name in ["default", "build", "ci", "strict", "net"] {
            let profile = try loader.load(name)
            let shown = profile.renderTOML()
            let again = try ProfileLoader(
                search: search, fs: MemoryFileSystem(["/s/shown.toml": shown]),
                variables: variables, home: "/home/u", cwd: "/s"
            ).load("/s/shown.toml")
            #expect(again.request == profile.request, "\(name):\n\(shown)")
        }
        // A fresh try: Y = "$$HOME" (a literal dollar) was shown as
        // "$HOME", which then read as the variable.
        let dollars = try ProfileLoader(
            search: search, fs: MemoryFileSystem(["/s/d.toml": "[environment]\nset = { Y = \"$$HOME and ${HOME}\" }\n"]),
            variables: variables, home: "/home/u", cwd: "/s"
        ).load("/s/d.toml")
        let shown = dollars.renderTOML()
        let back = try ProfileLoader(
            search: search, fs: MemoryFileSystem(["/s/shown.toml": shown]), variables: variables, home: "/home/u", cwd: "/s"
        ).load("/s/shown.toml")
        #expect(back.request == dollars.request, "\(shown)")
        #expect(shown.contains("$$HOME and /home/u"), "\(shown)")
    }
}
