import Testing

@testable import NookProfile

/// A broken profile and the first problem nook must report: the file, the
/// exact line and column, the key, and words the message must contain.
struct Broken: CustomTestStringConvertible, Sendable {
    let name: String
    let files: [String: String]
    let file: String
    let line: Int?
    let column: Int?
    let key: String?
    let says: [String]
    var unreadable: Set<String> = []
    var reference = "main"

    var testDescription: String { name }

    init(
        _ name: String, _ main: String, at file: String = "/p/main.toml", _ line: Int?, _ column: Int?, key: String?,
        says: [String], also: [String: String] = [:], unreadable: Set<String> = [], reference: String = "main"
    ) {
        self.name = name
        var files = also
        files["main"] = main
        self.files = files
        self.file = file
        self.line = line
        self.column = column
        self.key = key
        self.says = says
        self.unreadable = unreadable
        self.reference = reference
    }
}

let brokenProfiles: [Broken] = [
    // Syntax (toml++ reports these; the key is not known yet).
    Broken("an unclosed table header", "[process\nterminal = true\n", 1, 9, key: nil, says: ["not valid TOML"]),
    Broken(
        "a duplicate key", "[network]\nmode = \"none\"\nmode = \"host\"\n", 3, 8, key: nil,
        says: ["not valid TOML", "mode"]),
    Broken("an unterminated string", "[network]\nhostname = \"box\n", 2, 16, key: nil, says: ["not valid TOML"]),
    Broken("a value missing after =", "[limits]\npids =\n", 2, 7, key: nil, says: ["not valid TOML"]),
    Broken(
        "a table defined twice", "[user]\nuserns = \"root\"\n[user]\n", 3, 1, key: nil,
        says: ["not valid TOML", "user"]),

    // Unknown keys, with a suggestion.
    Broken(
        "a misspelt section", "[proces]\nterminal = true\n", 1, 2, key: "proces",
        says: ["unknown key", "did you mean [process]?"]),
    Broken(
        "a misspelt key", "[network]\nmdoe = \"none\"\n", 2, 1, key: "network.mdoe",
        says: ["unknown key in [network]", "did you mean mode?"]),
    Broken(
        "a key in the wrong section", "[process]\nhostname = \"x\"\n", 2, 1, key: "process.hostname",
        says: ["belongs in [network]"]),
    Broken(
        "a section key at the top", "memory = \"4GiB\"\n", 1, 1, key: "memory",
        says: ["unknown key", "belongs in [limits]"]),
    Broken(
        "a key from a newer version", "[security]\nlandlock = true\n", 2, 1, key: "security.landlock",
        says: ["unknown key in [security]", "cap_add"]),
    Broken(
        "an unknown key in a bind", "[filesystem]\nbinds = [{ source = \"/a\", readonly = true }]\n", 2, 27,
        key: "filesystem.binds.readonly", says: ["unknown key in a bind", "did you mean read_only?"]),
    Broken(
        "an unknown resource limit", "[limits.rlimits]\nnofiles = 10\n", 2, 1, key: "limits.rlimits.nofiles",
        says: ["unknown resource limit", "did you mean nofile?"]),
    Broken(
        "an unknown list change", "[filesystem]\nhidden = { append = [\"/opt\"] }\n", 2, 12,
        key: "filesystem.hidden.append",
        says: ["unknown key in a list change", "add"]),

    // Types.
    Broken(
        "a quoted boolean", "[process]\nterminal = \"yes\"\n", 2, 12, key: "process.terminal",
        says: ["expected a boolean", "found a string \"yes\"", "without quotes"]),
    Broken(
        "a number for a boolean", "[filesystem]\nworkspace = 1\n", 2, 13, key: "filesystem.workspace",
        says: ["expected a boolean", "found an integer 1"]),
    Broken(
        "a section that is not a table", "process = 3\n", 1, 11, key: "process", says: ["expected a table ([process])"]),
    Broken(
        "a command written as one string", "[process]\ncommand = \"make all\"\n", 2, 11, key: "process.command",
        says: ["expected an array of strings", "found a string"]),
    Broken(
        "an empty command", "[process]\ncommand = []\n", 2, 11, key: "process.command", says: ["the command is empty"]),
    Broken(
        "a number in a list of paths", "[filesystem]\nhidden = [\"/opt\", 3]\n", 2, 19, key: "filesystem.hidden",
        says: ["expected a string", "found an integer 3"]),
    Broken(
        "an environment value that is a number", "[environment.set]\nJOBS = 8\n", 2, 8, key: "environment.set.JOBS",
        says: ["expected a string", "found an integer 8"]),
    Broken(
        "cpus as a string", "[limits]\ncpus = \"2\"\n", 2, 8, key: "limits.cpus", says: ["expected a number of CPUs"]),
    Broken("extends as a number", "extends = 3\n", 1, 11, key: "extends", says: ["expected a profile name"]),

    // Values.
    Broken(
        "a misspelt network mode", "[network]\nmode = \"hsot\"\n", 2, 8, key: "network.mode",
        says: ["\"hsot\" is not a network mode", "expected \"none\", \"host\", \"pasta\" or \"slirp4netns\"",
               "did you mean \"host\"?"]),
    Broken(
        "a port mapping without a container port", "[network]\npublish = [\"8080:\"]\n", 2, 12, key: "network.publish",
        says: ["\"8080:\" is not a port mapping", "the container port is missing"]),
    Broken(
        "an address without a prefix", "[network]\naddress = \"10.0.2.100\"\n", 2, 11, key: "network.address",
        says: ["is not an IPv4 address with a prefix length"]),
    Broken(
        "an unknown user namespace mode", "[user]\nuserns = \"keepid\"\n", 2, 10, key: "user.userns",
        says: ["is not a user namespace mode", "did you mean \"keep-id\"?"]),
    Broken(
        "a size with a space", "[limits]\nmemory = \"4 G\"\n", 2, 10, key: "limits.memory",
        says: ["\"4 G\" is not a size", "without spaces: \"4G\""]),
    Broken(
        "a size with an unknown unit", "[limits]\nmemory = \"4GB2\"\n", 2, 10, key: "limits.memory",
        says: ["is not a size"]),
    Broken(
        "a fractional size", "[limits]\nmemory_high = \"1.5G\"\n", 2, 15, key: "limits.memory_high",
        says: ["\"1.5G\" is not a size"]),
    Broken(
        "a zero memory limit", "[limits]\nmemory = 0\n", 2, 10, key: "limits.memory",
        says: ["0 is not a usable size", "for no limit write \"max\""]),
    Broken(
        "a zero pids limit", "[limits]\npids = 0\n", 2, 8, key: "limits.pids",
        says: ["would let the sandbox start no process"]),
    Broken("pids as words", "[limits]\npids = \"lots\"\n", 2, 8, key: "limits.pids", says: ["\"lots\" is not a count"]),
    Broken(
        "a cpu weight out of range", "[limits]\ncpu_weight = 0\n", 2, 14, key: "limits.cpu_weight",
        says: ["0 is out of range", "from 1 to 10000"]),
    Broken(
        "a backwards cpu range", "[limits]\nallowed_cpus = \"3-1\"\n", 2, 16, key: "limits.allowed_cpus",
        says: ["is not a CPU list"]),
    Broken(
        "a misspelt required limit", "[limits]\nrequired = [\"memroy\"]\n", 2, 13, key: "limits.required",
        says: ["\"memroy\" is not a limit", "did you mean \"memory\"?"]),
    Broken(
        "a soft limit above the hard one", "[limits.rlimits]\nnofile = { soft = 10, hard = 5 }\n", 2, 10,
        key: "limits.rlimits.nofile", says: ["soft limit 10 is above the hard limit 5"]),
    Broken(
        "a decimal umask", "[process]\numask = 22\n", 2, 9, key: "process.umask",
        says: ["22 is a decimal number", "0o22"]),
    Broken(
        "too many preserved fds", "[process]\npreserve_fds = 5000\n", 2, 16, key: "process.preserve_fds",
        says: ["5000 is out of range"]),
    Broken(
        "an invalid hostname", "[network]\nhostname = \"my box\"\n", 2, 12, key: "network.hostname",
        says: ["is not a valid hostname"]),
    Broken(
        "an unknown capability", "[security]\ncap_add = [\"NET_RAWW\"]\n", 2, 12, key: "security.cap_add",
        says: ["\"NET_RAWW\" is not a capability", "did you mean CAP_NET_RAW?"]),
    Broken(
        "no_new_privs turned off", "[security]\nno_new_privs = false\n", 2, 16, key: "security.no_new_privs",
        says: ["false is not supported"]),
    Broken(
        "a root that is a relative path", "[filesystem]\nroot = \"srv/rootfs\"\n", 2, 8, key: "filesystem.root",
        says: ["\"srv/rootfs\" is a relative path; expected an absolute path"]),
    Broken(
        "a persistent layer name with a slash", "[filesystem]\npersist = \"../x\"\n", 2, 11, key: "filesystem.persist",
        says: ["\"../x\": '/' (U+002F) is not allowed in a layer's name"]),
    Broken(
        "a tmpfs mode that is not octal", "[filesystem]\ntmpfs = [{ destination = \"/x\", mode = \"999\" }]\n", 2, 39,
        key: "filesystem.tmpfs", says: ["\"999\" is not an octal mode"]),
    Broken(
        "a tmpfs without a size limit", "[filesystem]\ntmpfs = [{ destination = \"/x\", size = \"max\" }]\n", 2, 39,
        key: "filesystem.tmpfs", says: ["\"max\" is not allowed here"]),
    Broken(
        "a nested host entry", "[filesystem]\nhost_entries = [\"usr/lib\"]\n", 2, 17, key: "filesystem.host_entries",
        says: ["is not a top-level entry"]),
    Broken(
        "hiding the root", "[filesystem]\nhidden = [\"/\"]\n", 2, 11, key: "filesystem.hidden",
        says: ["\"/\" cannot be hidden"]),
    Broken(
        "a health interval in words", "[health]\ninterval = \"30 seconds\"\n", 2, 12, key: "health.interval",
        says: ["is not a duration"]),
    Broken(
        "a negative health interval", "[health]\ninterval = \"-5s\"\n", 2, 12, key: "health.interval",
        says: ["\"-5s\" is not a duration", "as \"30s\" or \"1m30s\""]),
    Broken(
        "a health timeout of zero", "[health]\ntimeout = \"0s\"\n", 2, 11, key: "health.timeout",
        says: ["\"0s\" is out of range; expected 1ms to a year"]),
    Broken(
        "a health interval as a number", "[health]\ninterval = 30\n", 2, 12, key: "health.interval",
        says: ["expected a string (a duration such as \"30s\")"]),
    Broken(
        "zero health retries", "[health]\nretries = 0\n", 2, 11, key: "health.retries",
        says: ["0 is out of range", "from 1 to 1000"]),
    Broken(
        "an empty health command", "[health]\ncommand = []\n", 2, 11, key: "health.command",
        says: ["the check's command is empty"]),
    Broken(
        "an unknown unhealthy action", "[health]\non_unhealthy = \"reboot\"\n", 2, 16, key: "health.on_unhealthy",
        says: ["\"reboot\" is not an action; expected \"none\", \"kill\" or \"restart\""]),
    Broken(
        "a misspelt health key", "[health]\nintervall = \"5s\"\n", 2, 1, key: "health.intervall",
        says: ["did you mean interval"]),
    Broken(
        "an environment name with =", "[environment]\npass = [\"A=B\"]\n", 2, 9, key: "environment.pass",
        says: ["\"A=B\" is not a variable name"]),

    // Paths.
    Broken(
        "a relative working directory", "[process]\nworkdir = \"src\"\n", 2, 11, key: "process.workdir",
        says: ["\"src\" is a relative path", "expected an absolute path", "${PWD}"]),
    Broken(
        "a path with ..", "[process]\nworkdir = \"/a/../b\"\n", 2, 11, key: "process.workdir", says: ["contains '..'"]),
    Broken(
        "a relative bind source", "[filesystem]\nbinds = [{ source = \"data\" }]\n", 2, 21, key: "filesystem.binds",
        says: ["\"data\" is a relative path"]),
    Broken(
        "a relative env file", "[environment]\nfiles = [\"./env\"]\n", 2, 10, key: "environment.files",
        says: ["relative path"]),
    Broken(
        "a bind without a source", "[filesystem]\nbinds = [{ destination = \"/a\" }]\n", 2, 10, key: "filesystem.binds",
        says: ["the bind has no source"]),

    // Variables.
    Broken(
        "a misspelt variable", "[process]\nworkdir = \"${HOEM}/x\"\n", 2, 11, key: "process.workdir",
        says: ["${HOEM} is not a profile variable", "did you mean ${HOME}?"]),
    Broken(
        "an unset environment variable", "[environment.set]\nX = \"${env:NOPE_NOT_SET}\"\n", 2, 5,
        key: "environment.set.X",
        says: ["${env:NOPE_NOT_SET} is not set in your environment"]),
    Broken(
        "a variable without braces", "[process]\nworkdir = \"$HOME/src\"\n", 2, 11, key: "process.workdir",
        says: ["$HOME is not expanded", "${HOME}"]),
    Broken(
        "an undefined runtime directory", "[filesystem]\nbinds = [\"${XDG_RUNTIME_DIR}/bus\"]\n", 2, 10,
        key: "filesystem.binds", says: ["${XDG_RUNTIME_DIR} is not defined here"]),
    Broken(
        "an unclosed variable", "[network]\nhostname = \"${USER\"\n", 2, 12, key: "network.hostname",
        says: ["\"${\" is not closed"]),

    // Duplicates and conflicts.
    Broken(
        "a destination bound twice",
        "[filesystem]\nbinds = [\"/data\", { source = \"/srv\", destination = \"/data\" }]\n",
        2, 19, key: "filesystem.binds", says: ["/data is listed twice", "line 2"]),
    Broken(
        "a capability added and dropped", "[security]\ncap_add = [\"NET_RAW\"]\ncap_drop = [\"net_raw\"]\n", 3, 13,
        key: "security.cap_drop", says: ["CAP_NET_RAW is both added", "and dropped"]),
    Broken(
        "memory_high above memory", "[limits]\nmemory = \"1GiB\"\nmemory_high = \"2GiB\"\n", 3, 15,
        key: "limits.memory_high",
        says: ["2GiB is above memory = 1GiB", "/p/main.toml:2:10"]),
    Broken(
        "a required limit that is not set", "[limits]\nrequired = [\"pids\"]\n", 2, 13, key: "limits.required",
        says: ["pids is required but no limits.pids is set"]),
    Broken(
        "a writable overlay on a read-only root", "[filesystem]\nread_only_root = true\noverlay = \"native\"\n", 3, 11,
        key: "filesystem.overlay", says: ["conflicts with read_only_root = true (/p/main.toml:2:18)"]),
    Broken(
        "a path both bound and hidden", "[filesystem]\nhidden = [\"/data\"]\nbinds = [\"/data\"]\n", 3, 10,
        key: "filesystem.binds", says: ["/data is bound here and hidden at /p/main.toml:2:11"]),
    Broken(
        "a variable both set and unset", "[environment]\nset = { A = \"1\" }\nunset = [\"A\"]\n", 3, 10,
        key: "environment.unset", says: ["A is also set at line 2"]),
    Broken(
        "keep-id with another uid", "[user]\nuserns = \"keep-id\"\nuid = 0\n", 3, 7, key: "user.uid",
        says: ["uid 0 conflicts with userns = \"keep-id\" (/p/main.toml:2:10), which keeps your own uid 1000"]),
    Broken("a negative uid", "[user]\nuid = -1\n", 2, 7, key: "user.uid", says: ["-1 is out of range"]),
    Broken(
        "replace combined with add", "[filesystem]\nhidden = { replace = [\"/a\"], add = [\"/b\"] }\n", 2, 10,
        key: "filesystem.hidden", says: ["replace cannot be combined with add"]),

    // extends: missing, cyclic, unreadable, broken parents fail closed (C19).
    Broken(
        "a missing parent", "extends = [\"nope\"]\n", 1, 12, key: "extends",
        says: ["no profile named \"nope\"", "looked in /p, /stock"]),
    Broken(
        "a missing parent file", "extends = [\"./extra.toml\"]\n", 1, 12, key: "extends",
        says: ["profile /p/extra.toml no such file", "optional = true"]),
    Broken(
        "a cycle through a parent", "extends = [\"base\"]\n", at: "/p/base.toml", 1, 12, key: "extends",
        says: ["extends makes a cycle: main (/p/main.toml) -> base (/p/base.toml) -> /p/main.toml"],
        also: ["base": "extends = [\"./main.toml\"]\n"]),
    Broken(
        "a profile that extends its own file", "extends = [\"/p/main.toml\"]\n", 1, 12, key: "extends",
        says: ["extends makes a cycle"]),
    Broken(
        "an unreadable parent", "extends = [\"base\"]\n", 1, 12, key: "extends",
        says: ["profile /p/base.toml cannot be read: EACCES"], also: ["base": "[network]\nmode = \"none\"\n"],
        unreadable: ["base"]),
    Broken(
        "a parent that is not TOML", "extends = [\"base\"]\n", at: "/p/base.toml", 2, 8, key: nil,
        says: ["not valid TOML", "extends chain: main (/p/main.toml) -> base (/p/base.toml)"],
        also: ["base": "[network]\nmode = \n"]),
    Broken(
        "a parent with a typo", "extends = [\"base\"]\n[network]\nmode = \"none\"\n", at: "/p/base.toml", 2, 1,
        key: "network.mdoe", says: ["did you mean mode?", "extends chain: main"],
        also: ["base": "[network]\nmdoe = \"none\"\n"]),
    Broken(
        "a grandparent missing", "extends = [\"base\"]\n", at: "/p/base.toml", 2, 12, key: "extends",
        says: ["no profile named \"gone\"", "extends chain: main (/p/main.toml) -> base (/p/base.toml)"],
        also: ["base": "# the shared base\nextends = [\"gone\"]\n"]),
    Broken(
        "a bad profile name in extends", "extends = [\"a b\"]\n", 1, 12, key: "extends",
        says: ["is not a profile name or a path"]),
    Broken(
        "removing an item no parent has", "extends = [\"base\"]\n[filesystem]\nhidden = { remove = [\"/opt\"] }\n", 3,
        22,
        key: "filesystem.hidden", says: ["/opt is not in the inherited list", "/srv"],
        also: ["base": "[filesystem]\nhidden = [\"/srv\"]\n"]),
]

struct BrokenProfileTests {
    @Test func theTableHoldsAtLeastFortyBrokenProfiles() {
        #expect(brokenProfiles.count >= 40)
        #expect(Set(brokenProfiles.map(\.name)).count == brokenProfiles.count, "case names repeat")
    }

    @Test(arguments: brokenProfiles)
    func eachBrokenProfileFailsWithItsLineColumnAndKey(_ c: Broken) throws {
        let found = issues(c.files, c.reference, unreadable: c.unreadable)
        let first = try #require(found.first, "\(c.name): loaded without an error")
        #expect(first.file == c.file, "\(first)")
        #expect(first.position?.line == c.line, "\(first)")
        #expect(first.position?.column == c.column, "\(first)")
        #expect(first.key == c.key, "\(first)")
        let text = first.description
        for words in c.says { #expect(text.contains(words), "missing \"\(words)\" in: \(text)") }
        // The printed line starts with file:line:column and the key.
        var prefix = c.file
        if let line = c.line, let column = c.column { prefix += ":\(line):\(column)" }
        if let key = c.key { prefix += ": \(key):" }
        #expect(text.hasPrefix(prefix), "\(text)")
    }
}
