// One profile file, checked against the schema: its `extends` and each
// setting with where it was written. Merging layers is Merge.swift's.

/// A parent named by `extends`.
struct ParentReference: Equatable, Sendable {
    var reference: String
    /// A missing optional parent is skipped (and said so with --verbose);
    /// one that exists but cannot be read or checked is still an error.
    var optional: Bool
    var origin: Origin
}

/// What one list key of one file says.
struct ListChange: Equatable, Sendable {
    var replace: Bool
    var add: [Setting] = []
    /// Identities of inherited items to drop, with where each was named.
    var remove: [(identity: String, origin: Origin)] = []

    static func == (a: ListChange, b: ListChange) -> Bool {
        a.replace == b.replace && a.add == b.add && a.remove.map(\.identity) == b.remove.map(\.identity)
    }
}

/// One profile file's settings.
struct Layer: Sendable {
    var file: String
    var extends: [ParentReference] = []
    var scalars: [String: Setting] = [:]
    var lists: [String: ListChange] = [:]
    var maps: [String: [(name: String, setting: Setting)]] = [:]
    /// Keys in the order written, for `show` of a single file.
    var order: [String] = []
}

enum LayerParser {
    /// Checks a parsed document. Problems are returned with the layer, so
    /// that every problem of the file can be reported together.
    static func parse(
        _ root: TOMLNode, file: String, variables: ProfileVariables,
        profileDirectory: String
    ) -> (Layer, [ProfileIssue]) {
        var c = Checker(file: file, variables: variables, profileDirectory: profileDirectory)
        var layer = Layer(file: file)
        guard case .table(let members) = root.value else { return (layer, c.issues) }
        for m in members {
            if m.key == "extends" {
                c.key = "extends"
                layer.extends = parents(m.node, &c)
            } else if Schema.sections.contains(m.key) {
                guard case .table(let inner) = m.node.value else {
                    c.key = m.key
                    c.wrongType(m.node, expected: "a table ([\(m.key)])")
                    continue
                }
                for member in inner { setting(member, section: m.key, into: &layer, &c) }
            } else if Schema.byPath[m.key] != nil {
                setting(m, section: "", into: &layer, &c)
            } else {
                unknownTopLevel(m, &c)
            }
        }
        return (layer, c.issues)
    }

    static func parents(_ node: TOMLNode, _ c: inout Checker) -> [ParentReference] {
        let items: [TOMLNode]
        switch node.value {
        case .string: items = [node]
        case .array(let a): items = a
        default:
            c.wrongType(
                node, expected: "a profile name, or an array of names and { profile = \"...\", optional = true }")
            return []
        }
        var out: [ParentReference] = []
        for item in items {
            switch item.value {
            case .string:
                if let s = c.string(item), let ref = reference(s, item, &c) {
                    out.append(ParentReference(reference: ref, optional: false, origin: c.origin(item)))
                }
            case .table(let members):
                var name: String?
                var optional = false
                var ok = true
                for m in members {
                    switch m.key {
                    case "profile":
                        name = c.string(m.node).flatMap { reference($0, m.node, &c) }
                        ok = ok && name != nil
                    case "optional": if let b = c.bool(m.node) { optional = b } else { ok = false }
                    default:
                        Schema.unknownMember(m, ["profile", "optional"], in: "an extends entry", &c)
                        ok = false
                    }
                }
                guard ok else { continue }
                guard let name else {
                    c.fail(item, "the entry names no profile; expected { profile = \"name\" }")
                    continue
                }
                out.append(ParentReference(reference: name, optional: optional, origin: c.origin(item)))
            default:
                c.wrongType(item, expected: "a profile name or { profile = \"...\", optional = true }")
            }
        }
        return out
    }

    static func reference(_ s: String, _ node: TOMLNode, _ c: inout Checker) -> String? {
        if ProfileSearchPath.isPath(s) || ProfileSearchPath.isName(s) { return s }
        c.fail(
            node,
            "\(tomlString(s)) is not a profile name or a path; expected a name such as \"build\" or a path "
                + "ending in .toml")
        return nil
    }

    static func setting(_ m: TOMLMember, section: String, into layer: inout Layer, _ c: inout Checker) {
        let path = section.isEmpty ? m.key : section + "." + m.key
        c.key = path
        guard let spec = Schema.byPath[path] else {
            unknownKey(m, section: section, &c)
            return
        }
        layer.order.append(path)
        switch spec.shape {
        case .scalar:
            if let (value, _) = spec.check(m.node, &c) {
                layer.scalars[path] = Setting(value: value, origin: c.origin(m.node), identity: "")
            }
        case .list(let mode):
            if let change = list(m.node, spec: spec, mode: mode, &c) { layer.lists[path] = change }
        case .map:
            guard case .table(let entries) = m.node.value else {
                c.wrongType(m.node, expected: "a table ([\(path)] with one key per name)")
                return
            }
            var out: [(name: String, setting: Setting)] = []
            for e in entries {
                c.key = path + "." + e.key
                if path == "environment.set" {
                    guard c.variableName(e.key, TOMLNode(value: .string(e.key), position: e.keyPosition)) != nil else {
                        continue
                    }
                } else if path == "limits.rlimits" && !Schema.rlimitNames.contains(e.key) {
                    let near = suggestion(for: e.key, in: Schema.rlimitNames)
                    c.fail(
                        at: e.keyPosition, key: c.key,
                        "unknown resource limit; expected one of \(Schema.rlimitNames.joined(separator: ", "))",
                        hint: near.map { "did you mean \($0)?" })
                    continue
                }
                if let (value, _) = spec.check(e.node, &c) {
                    out.append((e.key, Setting(value: value, origin: c.origin(e.node), identity: e.key)))
                }
            }
            layer.maps[path] = out
        }
    }

    static func list(_ node: TOMLNode, spec: KeySpec, mode: ListMode, _ c: inout Checker) -> ListChange? {
        var change = ListChange(replace: mode == .replace)
        var addNode: TOMLNode?
        switch node.value {
        case .array:
            addNode = node
        case .table(let members):
            var sawReplace = false
            var sawAdd = false
            var sawRemove = false
            for m in members {
                switch m.key {
                case "add":
                    addNode = m.node
                    sawAdd = true
                case "replace":
                    addNode = m.node
                    sawReplace = true
                    change.replace = true
                case "remove":
                    sawRemove = true
                    guard let items = c.array(m.node, of: "items to remove") else { continue }
                    for item in items {
                        if let id = spec.removal?(item, &c) { change.remove.append((id, c.origin(item))) }
                    }
                default:
                    Schema.unknownMember(m, ["add", "remove", "replace"], in: "a list change", &c)
                }
            }
            if sawReplace && (sawAdd || sawRemove) {
                c.fail(
                    node,
                    "replace cannot be combined with \(sawAdd ? "add" : "remove"); expected either "
                        + "{ replace = [...] } or { add = [...], remove = [...] }")
                return nil
            }
            if !sawReplace { change.replace = false }
        default:
            c.wrongType(node, expected: "an array, or a table { add = [...], remove = [...] } or { replace = [...] }")
            return nil
        }
        if let addNode, let items = c.array(addNode, of: "items") {
            for item in items {
                guard let (value, identity) = spec.check(item, &c) else { continue }
                if let earlier = change.add.first(where: { $0.identity == identity }) {
                    c.fail(
                        item, "\(identity) is listed twice; the first is at line \(earlier.origin.position.line)",
                        hint: "keep one of them")
                    continue
                }
                change.add.append(Setting(value: value, origin: c.origin(item), identity: identity))
            }
        }
        return change
    }

    static func unknownKey(_ m: TOMLMember, section: String, _ c: inout Checker) {
        let here = Schema.keys(in: section).map(\.name)
        var hint: String?
        if let near = suggestion(for: m.key, in: here) {
            hint = "did you mean \(near)?"
        } else if let elsewhere = Schema.keys.first(where: { $0.name == m.key && $0.section != section }) {
            hint =
                elsewhere.section.isEmpty
                ? "\(m.key) belongs at the top, before any [section]"
                : "\(m.key) belongs in [\(elsewhere.section)]"
        }
        let place = section.isEmpty ? "at the top level" : "in [\(section)]"
        c.fail(
            at: m.keyPosition, key: c.key, "unknown key \(place); expected one of \(here.joined(separator: ", "))",
            hint: hint)
    }

    static func unknownTopLevel(_ m: TOMLMember, _ c: inout Checker) {
        c.key = m.key
        var hint: String?
        if case .table = m.node.value, let near = suggestion(for: m.key, in: Schema.sections) {
            hint = "did you mean [\(near)]?"
        } else if let spec = Schema.keys.first(where: { $0.name == m.key }) {
            hint = "\(m.key) belongs in [\(spec.section)]"
        } else if let near = suggestion(for: m.key, in: Schema.sections + ["extends", "description"]) {
            hint = "did you mean \(near)?"
        }
        c.fail(
            at: m.keyPosition, key: m.key,
            "unknown key; expected extends, description or a section: "
                + Schema.sections.map { "[\($0)]" }.joined(separator: ", "), hint: hint)
    }
}
