// TOML 1.0 documents, parsed by toml++ through CNookToml and copied into
// Swift values that remember where each key and value was written.
import CNookToml

/// A line and column in a file, both from 1.
public struct SourcePosition: Equatable, Hashable, Sendable, CustomStringConvertible {
    public var line: Int
    public var column: Int
    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }
    public var description: String { "\(line):\(column)" }
}

/// One TOML value and where it begins.
public struct TOMLNode: Equatable, Sendable {
    public enum Value: Equatable, Sendable {
        case string(String)
        /// The number, and whether it was written in octal (0o...).
        case integer(Int64, octal: Bool)
        case float(Double)
        case boolean(Bool)
        /// A date, time or date-time, as TOML writes it.
        case datetime(String)
        case array([TOMLNode])
        case table([TOMLMember])
    }
    public var value: Value
    public var position: SourcePosition

    /// What a value of this kind is called in an error message.
    public var kindName: String {
        switch value {
        case .string: "a string"
        case .integer: "an integer"
        case .float: "a float"
        case .boolean: "a boolean"
        case .datetime: "a date/time"
        case .array: "an array"
        case .table: "a table"
        }
    }

    /// The value as it would be written in TOML, shortened for messages.
    public var excerpt: String {
        let text: String
        switch value {
        case .string(let s): text = tomlString(s)
        case .integer(let n, _): text = String(n)
        case .float(let d): text = String(d)
        case .boolean(let b): text = String(b)
        case .datetime(let s): text = s
        case .array(let items): text = "[" + items.map(\.excerpt).joined(separator: ", ") + "]"
        case .table(let members):
            text = "{ " + members.map { "\($0.key) = \($0.node.excerpt)" }.joined(separator: ", ") + " }"
        }
        return text.count > 60 ? String(text.prefix(57)) + "..." : text
    }
}

/// A key of a table, where the key was written, and its value.
public struct TOMLMember: Equatable, Sendable {
    public var key: String
    public var keyPosition: SourcePosition
    public var node: TOMLNode
}

/// A document that is not TOML, with where toml++ stopped.
public struct TOMLSyntaxError: Error, Equatable, Sendable {
    public var position: SourcePosition
    public var message: String
}

public enum TOML {
    /// Parses a whole document; its root is a table.
    public static func parse(_ text: String) throws(TOMLSyntaxError) -> TOMLNode {
        try parse(bytes: Array(text.utf8))
    }

    /// Parses raw bytes; toml++ refuses bytes that are not UTF-8.
    public static func parse(bytes: [UInt8]) throws(TOMLSyntaxError) -> TOMLNode {
        var bytes = bytes
        var doc: OpaquePointer?
        var error = nook_toml_error()
        let rc = bytes.withUnsafeMutableBufferPointer { buf in
            buf.baseAddress.map { base in
                base.withMemoryRebound(to: CChar.self, capacity: buf.count) {
                    nook_toml_parse($0, buf.count, &doc, &error)
                }
            } ?? nook_toml_parse("", 0, &doc, &error)
        }
        guard rc == 0, let doc else {
            let message = withUnsafeBytes(of: &error.message) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            throw TOMLSyntaxError(
                position: SourcePosition(line: Int(error.line), column: Int(error.column)),
                message: rc == -12 ? "out of memory" : message)
        }
        defer { nook_toml_free(doc) }
        var count: Int32 = 0
        guard let nodes = nook_toml_nodes(doc, &count), count > 0 else {
            return TOMLNode(value: .table([]), position: SourcePosition(line: 1, column: 1))
        }
        let flat = UnsafeBufferPointer(start: nodes, count: Int(count))
        return build(flat, 0)
    }

    /// Copies node `index` and its children. Depth is bounded by toml++'s
    /// own nesting limit (256), so recursion here is bounded too.
    static func build(_ flat: UnsafeBufferPointer<nook_toml_node>, _ index: Int) -> TOMLNode {
        let n = flat[index]
        let position = SourcePosition(line: Int(n.line), column: Int(n.column))
        let children = (0..<Int(n.child_count)).map { Int(n.first_child) + $0 }.filter { $0 < flat.count }
        let value: TOMLNode.Value
        switch Int32(n.kind) {
        case Int32(NOOK_TOML_TABLE.rawValue):
            value = .table(
                children.map { i in
                    let c = flat[i]
                    return TOMLMember(
                        key: text(c.key, c.key_length),
                        keyPosition: SourcePosition(line: Int(c.key_line), column: Int(c.key_column)),
                        node: build(flat, i))
                })
        case Int32(NOOK_TOML_ARRAY.rawValue): value = .array(children.map { build(flat, $0) })
        case Int32(NOOK_TOML_STRING.rawValue): value = .string(text(n.text, n.text_length))
        case Int32(NOOK_TOML_INTEGER.rawValue):
            value = .integer(n.integer, octal: n.format == Int32(NOOK_TOML_OCTAL.rawValue))
        case Int32(NOOK_TOML_FLOAT.rawValue): value = .float(n.number)
        case Int32(NOOK_TOML_BOOLEAN.rawValue): value = .boolean(n.boolean != 0)
        default: value = .datetime(text(n.text, n.text_length))
        }
        return TOMLNode(value: value, position: position)
    }

    static func text(_ p: UnsafePointer<CChar>?, _ length: Int) -> String {
        guard let p, length > 0 else { return "" }
        return p.withMemoryRebound(to: UInt8.self, capacity: length) {
            String(decoding: UnsafeBufferPointer(start: $0, count: length), as: UTF8.self)
        }
    }
}

/// A TOML basic string literal for s.
public func tomlString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 || u.value == 0x7F {
                let hex = String(u.value, radix: 16, uppercase: true)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    return out + "\""
}

/// A TOML key: bare when it can be, quoted otherwise.
public func tomlKey(_ s: String) -> String {
    let bare =
        !s.isEmpty
        && s.unicodeScalars.allSatisfy {
            ($0 >= "a" && $0 <= "z") || ($0 >= "A" && $0 <= "Z") || ($0 >= "0" && $0 <= "9") || $0 == "_" || $0 == "-"
        }
    return bare ? s : tomlString(s)
}
