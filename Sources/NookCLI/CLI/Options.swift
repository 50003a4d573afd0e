import NookSupport

/// One option a command accepts. Help text is generated from these, so the
/// help and the parser cannot disagree.
struct OptionSpec: Sendable {
    let long: String
    let short: Character?
    /// The value's placeholder (`PATH`), or nil for a flag without a value.
    let value: String?
    let help: String
    let repeatable: Bool

    init(_ long: String, short: Character? = nil, value: String? = nil, repeatable: Bool = false, _ help: String) {
        self.long = long
        self.short = short
        self.value = value
        self.help = help
        self.repeatable = repeatable
    }
}

/// The parsed command line of one command.
struct ParsedOptions {
    var flags: Set<String> = []
    var values: [String: [String]] = [:]
    var positionals: [String] = []
    /// The positionals came after a `--` that came first: all of them are
    /// the command, even a later `--` (`nook run -- sleep -- 10`).
    var commandAfterDashDash = false

    func has(_ long: String) -> Bool { flags.contains(long) }
    func value(_ long: String) -> String? { values[long]?.last }
    func all(_ long: String) -> [String] { values[long] ?? [] }
}

enum OptionParser {
    /// Parses `args`. With `stopAtPositional`, the first argument that is
    /// not an option ends option parsing (so `nook run ls -l` runs `ls -l`);
    /// `--` always does.
    static func parse(_ args: [String], options: [OptionSpec], command: String,
                      stopAtPositional: Bool) throws(UsageFailure) -> ParsedOptions {
        var out = ParsedOptions()
        var i = 0
        func lookup(long: String) throws(UsageFailure) -> OptionSpec {
            if let spec = options.first(where: { $0.long == long }) { return spec }
            let near = options.map(\.long).min { distance($0, long) < distance($1, long) }
            let hint = near.flatMap { distance($0, long) <= 3 ? "did you mean --\($0)?" : nil }
            throw UsageFailure("\(command): unknown option --\(long)", hint: hint ?? "see: nook \(command) --help")
        }
        func record(_ spec: OptionSpec, _ value: String?) throws(UsageFailure) {
            if let value {
                if !spec.repeatable, out.values[spec.long] != nil {
                    throw UsageFailure("\(command): --\(spec.long) given twice")
                }
                out.values[spec.long, default: []].append(value)
            } else {
                out.flags.insert(spec.long)
            }
        }
        while i < args.count {
            let arg = args[i]
            i += 1
            if arg == "--" {
                out.commandAfterDashDash = out.positionals.isEmpty
                out.positionals += args[i...]
                break
            }
            if arg.hasPrefix("--") {
                let body = String(arg.dropFirst(2))
                let name = body.split(separator: "=", maxSplits: 1).first.map(String.init) ?? body
                let spec = try lookup(long: name)
                if spec.value == nil {
                    if body.contains("=") { throw UsageFailure("\(command): --\(name) takes no value") }
                    try record(spec, nil)
                } else if let eq = body.firstIndex(of: "=") {
                    try record(spec, String(body[body.index(after: eq)...]))
                } else {
                    guard i < args.count else {
                        throw UsageFailure("\(command): --\(name) needs a value (\(spec.value!))")
                    }
                    try record(spec, args[i])
                    i += 1
                }
            } else if arg.hasPrefix("-") && arg.count > 1 {
                var letters = Array(arg.dropFirst())
                while !letters.isEmpty {
                    let letter = letters.removeFirst()
                    guard let spec = options.first(where: { $0.short == letter }) else {
                        throw UsageFailure("\(command): unknown option -\(letter)", hint: "see: nook \(command) --help")
                    }
                    if spec.value == nil {
                        try record(spec, nil)
                        continue
                    }
                    if !letters.isEmpty {
                        try record(spec, String(letters))
                    } else {
                        guard i < args.count else {
                            throw UsageFailure("\(command): -\(letter) needs a value (\(spec.value!))")
                        }
                        try record(spec, args[i])
                        i += 1
                    }
                    letters = []
                }
            } else {
                out.positionals.append(arg)
                if stopAtPositional {
                    out.positionals += args[i...]
                    break
                }
            }
        }
        return out
    }

    /// The options block of a help text.
    static func help(_ options: [OptionSpec]) -> String {
        let rows = options.map { o -> (String, String) in
            var left = o.short.map { "-\($0), " } ?? "    "
            left += "--\(o.long)"
            if let v = o.value { left += " \(v)" }
            return (left, o.help)
        }
        let width = min(rows.map(\.0.count).max() ?? 0, 30)
        return rows.map { left, text in
            let pad = left.count < width ? String(repeating: " ", count: width - left.count) : ""
            if left.count > width { return "  \(left)\n  \(String(repeating: " ", count: width))  \(text)" }
            return "  \(left)\(pad)  \(text)"
        }.joined(separator: "\n")
    }

    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var row = Array(0...b.count)
        for i in 1...max(a.count, 1) where i <= a.count {
            var prev = row[0]
            row[0] = i
            for j in 1...max(b.count, 1) where j <= b.count {
                let cur = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] == b[j - 1] ? 0 : 1))
                prev = cur
            }
        }
        return row[b.count]
    }
}

extension ParsedOptions {
    /// The value of a flag that takes one of a fixed set of words, or an
    /// error listing them.
    func choice<T: RawRepresentable & CaseIterable>(_ long: String, _ type: T.Type) throws(UsageFailure) -> T?
    where T.RawValue == String {
        guard let word = value(long) else { return nil }
        guard let chosen = T(rawValue: word) else {
            let words = T.allCases.map(\.rawValue)
            throw UsageFailure("--\(long) \(word): unknown value",
                               hint: "use " + words.dropLast().joined(separator: ", ") + " or " + (words.last ?? ""))
        }
        return chosen
    }
}

/// Options every command takes.
enum CommonOptions {
    static let specs: [OptionSpec] = [
        OptionSpec("verbose", short: "v", "say what nook chose (id ranges, network, workspace); same as --log-level info"),
        OptionSpec("debug", "log each step; same as --log-level debug"),
        OptionSpec("log-level", value: "LEVEL", "error, warning (default), info, debug or trace; also NOOK_LOG"),
        OptionSpec("log-format", value: "FORMAT", "text (default) or json"),
        OptionSpec("help", short: "h", "show this help"),
    ]

    static func apply(_ parsed: ParsedOptions, environment: [String: String]) throws(UsageFailure) {
        if let name = environment["NOOK_LOG"], !name.isEmpty {
            guard let level = LogLevel(name: name) else {
                throw UsageFailure("NOOK_LOG=\(name): unknown level", hint: "use error, warning, info, debug or trace")
            }
            Log.level = level
        }
        if parsed.has("verbose") { Log.level = max(Log.level, .info) }
        if parsed.has("debug") { Log.level = max(Log.level, .debug) }
        if let name = parsed.value("log-level") {
            guard let level = LogLevel(name: name) else {
                throw UsageFailure("--log-level \(name): unknown level", hint: "use error, warning, info, debug or trace")
            }
            Log.level = level
        }
        if let format = try parsed.choice("log-format", LogFormat.self) { Log.format = format }
    }
}
