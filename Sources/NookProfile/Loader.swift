// Loading a profile: find the file, follow `extends` depth first (parents
// before the profile, each file once), check each file, merge, check the
// whole. Every problem on the way is an error that names the file, the
// line and the chain of profiles that led there; nothing is skipped, so a
// missing or broken parent can never quietly drop a restriction
// (CASES.md C19).
import NookSpec

/// A loaded profile: the request it stands for and where each value came from.
public struct Profile: Sendable {
    /// What the user named: `build` or `./mine.toml`.
    public var reference: String
    /// The file it resolved to, as shown (home as ~).
    public var file: String
    /// Every file merged, parents first.
    public var files: [String]
    public var settings: MergedSettings
    public var request: SandboxRequest
    /// Things to say once (optional parents that were missing).
    public var warnings: [String] = []
    public var notes: [String] = []
}

public struct ProfileLoader: Sendable {
    public var search: ProfileSearchPath
    public var fs: any ProfileFileSystem
    public var variables: ProfileVariables
    /// The caller's home, to show paths below it as ~/...
    public var home: String
    /// Where a relative `--profile ./x.toml` is looked up.
    public var cwd: String

    public init(
        search: ProfileSearchPath, fs: any ProfileFileSystem = DiskFileSystem(), variables: ProfileVariables,
        home: String, cwd: String
    ) {
        self.search = search
        self.fs = fs
        self.variables = variables
        self.home = home
        self.cwd = cwd
    }

    /// The file a reference names, or a problem saying where nook looked.
    public func locate(_ reference: String) throws(ProfileFailure) -> String {
        if ProfileSearchPath.isPath(reference) {
            return reference.hasPrefix("/")
                ? cleanedPath(reference) : cleanedPath(cwd + "/" + reference)
        }
        guard ProfileSearchPath.isName(reference) else {
            throw ProfileFailure([
                ProfileIssue(
                    file: reference, position: nil, key: nil,
                    message: "not a profile name or a path",
                    hint: "a name is letters, digits, '-', '_' and '.'; a file is a path with a '/' or ending in .toml")
            ])
        }
        guard let path = search.find(reference, in: fs) else {
            throw ProfileFailure([
                ProfileIssue(
                    file: reference, position: nil, key: nil,
                    message: "no profile of this name; looked in "
                        + search.directories.map { display($0.path) }
                        .joined(separator: ", "),
                    hint: "see: nook profile list; or give a file as ./\(reference).toml")
            ])
        }
        return path
    }

    public func load(_ reference: String) throws(ProfileFailure) -> Profile {
        let path = try locate(reference)
        var walk = Walk(loader: self)
        walk.visit(path: path, label: label(reference, path), chain: [], via: nil)
        var issues = walk.issues
        var merged = MergedSettings()
        if issues.isEmpty {
            let (m, mergeIssues) = Merger.merge(walk.layers)
            merged = m
            issues += mergeIssues + Merger.conflicts(m, callerUID: variables.builtins["UID"])
        }
        guard issues.isEmpty else { throw ProfileFailure(issues) }
        var profile = Profile(
            reference: reference, file: display(path), files: walk.layers.map(\.file),
            settings: merged, request: Merger.request(merged, environment: variables.environment))
        profile.notes = walk.notes
        return profile
    }

    func display(_ path: String) -> String {
        if home.count > 1, path.hasPrefix(home + "/") { return "~" + path.dropFirst(home.count) }
        return path
    }

    func label(_ reference: String, _ path: String) -> String {
        ProfileSearchPath.isName(reference) ? "\(reference) (\(display(path)))" : display(path)
    }
}

/// The depth-first walk over `extends`.
private struct Walk {
    let loader: ProfileLoader
    var layers: [Layer] = []
    var visited: Set<String> = []
    var issues: [ProfileIssue] = []
    var notes: [String] = []

    init(loader: ProfileLoader) { self.loader = loader }

    /// `via`: the extends entry that named this file, where a problem with
    /// the file itself (missing, unreadable) is reported.
    mutating func visit(path: String, label: String, chain: [(canonical: String, label: String)], via: ParentReference?)
    {
        let canonical = loader.fs.canonical(path)
        let labels = chain.map(\.label) + [label]
        if chain.contains(where: { $0.canonical == canonical }) {
            report(
                via, file: path, "extends makes a cycle: " + labels.joined(separator: " -> "),
                hint: "remove one of the extends entries", chain: labels)
            return
        }
        if visited.contains(canonical) { return }
        visited.insert(canonical)

        let text: String
        switch loader.fs.read(path) {
        case .success(let t): text = t
        case .failure(let problem):
            if problem == .missing, via?.optional == true {
                notes.append("optional profile \(via?.reference ?? path) not found; going on without it")
                return
            }
            report(
                via, file: path, "profile \(loader.display(path)) \(problem)",
                hint: problem.fix, chain: labels)
            return
        }
        let shown = loader.display(path)
        let root: TOMLNode
        do {
            root = try TOML.parse(text)
        } catch {
            var issue = ProfileIssue(
                file: shown, position: error.position, key: nil,
                message: "not valid TOML: \(error.message)")
            issue.chain = labels
            issues.append(issue)
            return
        }
        let (layer, found) = LayerParser.parse(
            root, file: shown, variables: loader.variables,
            profileDirectory: directoryOf(path))
        issues += found.map {
            var i = $0
            i.chain = labels
            return i
        }

        let nextChain = chain + [(canonical, label)]
        for parent in layer.extends {
            guard let parentPath = locate(parent, from: path, canonical: canonical, chain: labels) else { continue }
            visit(path: parentPath, label: loader.label(parent.reference, parentPath), chain: nextChain, via: parent)
        }
        layers.append(layer)
    }

    /// A parent's file: a path relative to the including file's directory
    /// (never the current directory, which changes between runs), or a
    /// name on the search path other than the including file itself.
    mutating func locate(_ parent: ParentReference, from path: String, canonical: String, chain: [String]) -> String? {
        let ref = parent.reference
        if ProfileSearchPath.isPath(ref) {
            return ref.hasPrefix("/") ? cleanedPath(ref) : cleanedPath(directoryOf(path) + "/" + ref)
        }
        if let found = loader.search.find(ref, excluding: canonical, in: loader.fs) { return found }
        if parent.optional {
            notes.append("optional profile \(ref) not found; going on without it")
            return nil
        }
        var issue = ProfileIssue(
            parent.origin, key: "extends",
            "no profile named \(tomlString(ref)); looked in "
                + loader.search.directories.map { loader.display($0.path) }.joined(separator: ", "),
            hint: "check the name (see: nook profile list), or mark it { profile = \"\(ref)\", optional = true }")
        issue.chain = chain
        issues.append(issue)
        return nil
    }

    mutating func report(_ via: ParentReference?, file: String, _ message: String, hint: String?, chain: [String]) {
        var issue =
            via.map { ProfileIssue($0.origin, key: "extends", message, hint: hint) }
            ?? ProfileIssue(file: loader.display(file), position: nil, key: nil, message: message, hint: hint)
        issue.chain = chain
        issues.append(issue)
    }
}

extension Profile {
    /// Paths the profile needs on this host that are not there: its root
    /// directory, bind sources and env files. Checked when a sandbox starts (not by `check`,
    /// since a profile may be written for another machine), so that the
    /// error names the line of the profile rather than a flag.
    public func missingHostPaths(exists: (String) -> Bool) -> [ProfileIssue] {
        var issues: [ProfileIssue] = []
        if let root = settings.scalars["filesystem.root"], case .string(let path) = root.value, path != "host",
           !exists(path) {
            issues.append(ProfileIssue(root.origin, key: "filesystem.root", "the root directory \(path) does not exist "
                + "on this host", hint: "create it (debootstrap, nook unshare tar -x ...), or set root = \"host\""))
        }
        for bind in settings.lists["filesystem.binds"] ?? [] {
            guard case .bind(let b) = bind.value, !exists(b.source) else { continue }
            issues.append(
                ProfileIssue(
                    bind.origin, key: "filesystem.binds", "the source \(b.source) does not exist on this host",
                    hint: "create it first, or remove the bind"))
        }
        for file in settings.lists["environment.files"] ?? [] {
            guard case .string(let path) = file.value, !exists(path) else { continue }
            issues.append(
                ProfileIssue(
                    file.origin, key: "environment.files", "\(path) does not exist on this host",
                    hint: "create it, or remove it from files"))
        }
        return issues
    }
}
