import Testing

@testable import NookProfile

/// The toml++ shim hands back every key and value with where it was written.
struct TOMLTests {
    @Test func keysAndValuesCarryTheirLineAndColumn() throws {
        let doc = try TOML.parse("a = 1\n[sec]\n  name = \"x\"\n  list = [1, 0o22]\n")
        guard case .table(let members) = doc.value else {
            Issue.record("root is not a table")
            return
        }
        #expect(members.map(\.key) == ["a", "sec"])
        #expect(members[0].keyPosition == SourcePosition(line: 1, column: 1))
        #expect(members[0].node.position == SourcePosition(line: 1, column: 5))
        guard case .table(let sec) = members[1].node.value else {
            Issue.record("sec is not a table")
            return
        }
        #expect(sec[0].key == "name" && sec[0].keyPosition == SourcePosition(line: 3, column: 3))
        #expect(sec[0].node.value == .string("x"))
        guard case .array(let items) = sec[1].node.value else {
            Issue.record("list")
            return
        }
        #expect(items.map(\.value) == [.integer(1, octal: false), .integer(18, octal: true)])
        #expect(items[1].position == SourcePosition(line: 4, column: 14))
    }

    @Test func aSyntaxErrorSaysWhereItIs() {
        #expect(throws: TOMLSyntaxError.self) { try TOML.parse("a = 1\nb = = 2\n") }
        do {
            _ = try TOML.parse("a = 1\nb = = 2\n")
        } catch {
            #expect(error.position.line == 2, "\(error)")
        }
    }

    @Test func aDuplicateKeyIsASyntaxError() {
        #expect(throws: TOMLSyntaxError.self) { try TOML.parse("a = 1\na = 2\n") }
    }

    @Test func stringsMayHoldNulAndNonASCII() throws {
        let doc = try TOML.parse("s = \"a\\u0000b é\"\n")
        guard case .table(let m) = doc.value else { return }
        #expect(m[0].node.value == .string("a\u{0}b é"))
    }
}
