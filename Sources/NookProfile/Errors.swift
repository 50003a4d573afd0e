// What goes wrong in a profile, said so that the line to change can be
// found: file:line:column, the key, what was found and what was expected.
import NookSupport

/// Where a value of a profile was written.
public struct Origin: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// The file as shown to the user (home written as ~).
    public var file: String
    public var position: SourcePosition
    public init(file: String, position: SourcePosition) {
        self.file = file
        self.position = position
    }
    public var description: String { "\(file):\(position.line):\(position.column)" }
}

/// One problem in a profile.
public struct ProfileIssue: Equatable, Sendable, CustomStringConvertible {
    public var file: String
    /// nil when the file itself is the problem (missing, unreadable).
    public var position: SourcePosition?
    /// The dotted key (`limits.memory`), nil for a syntax error.
    public var key: String?
    public var message: String
    public var hint: String?
    /// The profiles that led here, outermost first, as `name (file)`.
    public var chain: [String] = []

    public init(file: String, position: SourcePosition?, key: String?, message: String, hint: String? = nil) {
        self.file = file
        self.position = position
        self.key = key
        self.message = message
        self.hint = hint
    }

    public init(_ origin: Origin, key: String?, _ message: String, hint: String? = nil) {
        self.init(file: origin.file, position: origin.position, key: key, message: message, hint: hint)
    }

    /// `file:line:column: key: message`, then the hint and the chain.
    public var description: String {
        var text = file
        if let position { text += ":\(position.line):\(position.column)" }
        text += ": "
        if let key { text += "\(key): " }
        text += message
        if let hint { text += "\n  hint: \(hint)" }
        if chain.count > 1 { text += "\n  extends chain: " + chain.joined(separator: " -> ") }
        return text
    }
}

/// A profile that cannot be used: every problem found, in file order.
/// Nothing runs with a profile that has one (a missing parent could
/// otherwise drop a restriction without anyone noticing).
public struct ProfileFailure: NookFailure, Equatable {
    public var issues: [ProfileIssue]
    public init(_ issues: [ProfileIssue]) { self.issues = issues }
    public var description: String { issues.map(\.description).joined(separator: "\n") }
}

/// The closest of `candidates` to `word`, when it is close enough to be
/// a likely misspelling.
func suggestion(for word: String, in candidates: [String]) -> String? {
    let scored = candidates.map { ($0, editDistance($0.lowercased(), word.lowercased())) }
    guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
    let limit = max(1, min(3, word.count / 3 + 1))
    return best.1 <= limit ? best.0 : nil
}

func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a)
    let b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var row = Array(0...b.count)
    for i in 1...a.count {
        var previous = row[0]
        row[0] = i
        for j in 1...b.count {
            let current = row[j]
            row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
            previous = current
        }
    }
    return row[b.count]
}
