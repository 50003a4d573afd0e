import NookSpec

@testable import NookProfile

/// A loader over profiles held in memory, in one search directory /p, for
/// a caller with a fixed home, directory and environment.
func memoryLoader(
    _ files: [String: String], unreadable: Set<String> = [],
    environment: [String: String] = ["EDITOR": "vi", "LANG": "C.UTF-8"]
) -> ProfileLoader {
    let variables = ProfileVariables.caller(
        uid: 1000, gid: 1000, user: "u", home: "/home/u", cwd: "/work/proj",
        environment: environment)
    var all: [String: String] = [:]
    for (name, text) in files { all[name.hasPrefix("/") ? name : "/p/\(name).toml"] = text }
    let locked = Set(unreadable.map { $0.hasPrefix("/") ? $0 : "/p/\($0).toml" })
    return ProfileLoader(
        search: ProfileSearchPath([ProfileDirectory("/p", .user), ProfileDirectory("/stock", .stock)]),
        fs: MemoryFileSystem(all, unreadable: locked), variables: variables, home: "/home/u",
        cwd: "/work/proj")
}

/// Loads `reference` (default "main") from memory; the problems, or none.
func issues(_ files: [String: String], _ reference: String = "main", unreadable: Set<String> = []) -> [ProfileIssue] {
    do {
        _ = try memoryLoader(files, unreadable: unreadable).load(reference)
        return []
    } catch {
        return error.issues
    }
}

func load(_ files: [String: String], _ reference: String = "main") throws -> Profile {
    try memoryLoader(files).load(reference)
}
