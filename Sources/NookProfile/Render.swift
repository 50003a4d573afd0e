// `nook profile show`: the merged profile as TOML, each value followed by
// a comment naming the file and line that set it. The output is itself a
// valid profile with the same meaning (it has no extends, so its plain
// lists replace nothing).

extension Profile {
    public func renderTOML() -> String {
        var out = "# profile \(reference): \(file)\n"
        if files.count > 1 { out += "# merged, parents first: \(files.joined(separator: ", "))\n" }
        out += "# each value is followed by the file:line that set it\n"
        let s = settings
        if let d = s.scalars["description"] {
            out += "\ndescription = \(Render.value(d.value, key: "description"))  # \(Render.at(d))\n"
        }
        for section in Schema.sections {
            let specs = Schema.keys(in: section)
            var body = ""
            var tables = ""
            for spec in specs {
                switch spec.shape {
                case .scalar:
                    if let v = s.scalars[spec.path] {
                        body += "\(spec.name) = \(Render.value(v.value, key: spec.path))  # \(Render.at(v))\n"
                    }
                case .list:
                    guard let items = s.lists[spec.path] else { continue }
                    if items.isEmpty {
                        body += "\(spec.name) = []\n"
                    } else {
                        body += "\(spec.name) = [\n"
                        for item in items {
                            body += "    \(Render.value(item.value, key: spec.path)),  # \(Render.at(item))\n"
                        }
                        body += "]\n"
                    }
                case .map:
                    guard let entries = s.maps[spec.path], !entries.isEmpty else { continue }
                    tables += "\n[\(section).\(spec.name)]\n"
                    for e in entries {
                        tables +=
                            "\(tomlKey(e.name)) = \(Render.value(e.setting.value, key: spec.path))  # \(Render.at(e.setting))\n"
                    }
                }
            }
            if !body.isEmpty || !tables.isEmpty { out += "\n[\(section)]\n" + body + tables }
        }
        return out
    }
}

enum Render {
    static func at(_ s: Setting) -> String { "\(s.origin.file):\(s.origin.position.line)" }

    static func value(_ v: SettingValue, key: String) -> String {
        switch v {
        case .string(let s): return shownString(s)
        case .bool(let b): return String(b)
        case .integer(let n): return String(n)
        case .number(let d): return d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) + ".0" : String(d)
        case .limit(.max): return "\"max\""
        case .limit(.value(let n)):
            if key == "limits.pids" { return String(n) }
            let text = Sizes.format(n)
            return text == String(n) ? text : shownString(text)
        case .strings(let a): return "[" + a.map(shownString).joined(separator: ", ") + "]"
        case .bind(let b):
            return
                "{ source = \(shownString(b.source)), destination = \(shownString(b.destination)), read_only = \(b.readOnly) }"
        case .tmpfs(let t):
            var parts = ["destination = \(shownString(t.destination))"]
            if let size = t.size { parts.append("size = \(shownString(Sizes.format(size)))") }
            if let mode = t.mode { parts.append("mode = \(shownString(mode))") }
            return "{ " + parts.joined(separator: ", ") + " }"
        case .rlimit(let soft, let hard):
            func n(_ x: UInt64) -> String { x == UInt64.max ? "\"unlimited\"" : String(x) }
            return soft == hard ? n(soft) : "{ soft = \(n(soft)), hard = \(n(hard)) }"
        case .umask(let u):
            let digits = String(u, radix: 8)
            return shownString(String(repeating: "0", count: max(0, 4 - digits.count)) + digits)
        }
    }
}

/// A value as a profile writes it: a TOML string whose `$` is doubled,
/// since strings are expanded when read (`"$$HOME"` was shown as
/// `"$HOME"`, which then read as the variable: a fresh try).
func shownString(_ s: String) -> String {
    tomlString(s.split(separator: "$", omittingEmptySubsequences: false).joined(separator: "$$"))
}
