// swift-tools-version:6.0
// nook: rootless sandboxes and containers. No package from outside the
// toolchain: C libraries come from Debian through the small C targets below.
import PackageDescription

let package = Package(
    name: "nook",
    products: [
        .executable(name: "nook", targets: ["nook"]),
    ],
    targets: [
        // Raw Linux syscalls Glibc does not wrap (or wraps only in 2.36+).
        .target(name: "CNookSys"),
        // Everything that runs between clone and exec: namespaces, mounts,
        // pivot_root, the pid-1 init and the payload's security steps.
        .target(name: "CNookLaunch", dependencies: ["CNookSys"]),
        .target(name: "CNookSeccomp", linkerSettings: [.linkedLibrary("seccomp")]),
        .target(name: "CNookCap", linkerSettings: [.linkedLibrary("cap")]),
        .target(name: "CNookSubid", linkerSettings: [.linkedLibrary("subid")]),
        .target(name: "CNookSdBus", linkerSettings: [.linkedLibrary("systemd")]),
        // toml++ (C++17) behind a C header: profiles are parsed here.
        .target(name: "CNookToml", linkerSettings: [.linkedLibrary("tomlplusplus"), .linkedLibrary("stdc++")]),
        // SHA-256 from libcrypto and tar reading from libarchive, both opened
        // with dlopen on first use so that commands without images do not
        // pay for loading them.
        .target(name: "CNookDigest", linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "CNookArchive", dependencies: ["CNookDigest"], linkerSettings: [.linkedLibrary("dl")]),
        // HTTP from libcurl, opened with dlopen on first use (registries).
        .target(name: "CNookCurl", linkerSettings: [.linkedLibrary("dl")]),

        .target(name: "NookSupport"),
        .target(name: "NookSpec", dependencies: ["NookSupport"]),
        // Profiles: TOML files compiled into a SandboxRequest.
        .target(name: "NookProfile", dependencies: ["NookSpec", "NookSupport", "CNookToml"]),
        .target(
            name: "NookRuntime",
            dependencies: ["NookSpec", "NookSupport", "CNookSys", "CNookLaunch", "CNookSeccomp", "CNookCap", "CNookSubid"]
        ),
        // Images: blobs by digest, layers unpacked once and shared, locks and
        // garbage collection. Below the runtime: it unpacks inside a user
        // namespace through a runner the caller passes in.
        .target(name: "NookStore", dependencies: ["NookSpec", "NookSupport", "CNookSys", "CNookArchive", "CNookDigest"]),
        // The OCI distribution client: references, credentials, token and
        // basic auth, manifests and blobs into the store, and push.
        .target(name: "NookRegistry", dependencies: ["NookStore", "NookSpec", "NookSupport", "NookProfile", "CNookCurl"]),
        // The sandbox's cgroup: a systemd user scope over D-Bus, a delegated
        // cgroupfs subtree, or none; limits, warnings, statistics.
        .target(name: "NookCgroups", dependencies: ["NookSpec", "NookSupport", "CNookSdBus"]),
        // Detached containers on disk: records, names, locks, logs, health, events.
        .target(name: "NookState", dependencies: ["NookSpec", "NookSupport", "CNookSys"]),
        // nook doctor's checks of the host, as values a test can look at.
        .target(name: "NookDoctor", dependencies: ["NookCgroups", "NookSpec", "NookSupport", "CNookSubid", "CNookProbe"]),
        // Probes that need a child process in new namespaces (user
        // namespace, overlay mount); the child runs only C.
        .target(name: "CNookProbe"),
        // The command line: parsing, help, output. Thin; a library so that
        // its parsing is testable.
        .target(
            name: "NookCLI",
            dependencies: ["NookSpec", "NookProfile", "NookRuntime", "NookCgroups", "NookDoctor", "NookStore", "NookState", "NookRegistry",
                           "NookSupport", "CNookSys"]
        ),
        .executableTarget(name: "nook", dependencies: ["NookCLI"]),

        .testTarget(name: "NookSpecTests", dependencies: ["NookSpec", "NookSupport"]),
        .testTarget(name: "NookProfileTests", dependencies: ["NookProfile", "NookSpec", "NookSupport"]),
        .testTarget(name: "NookRuntimeTests", dependencies: ["NookRuntime", "NookSpec", "NookSupport"]),
        .testTarget(name: "NookStoreTests", dependencies: ["NookStore", "NookSpec", "NookSupport", "CNookSys"]),
        .testTarget(name: "NookRegistryTests", dependencies: ["NookRegistry", "NookStore", "NookSupport"]),
        .testTarget(name: "NookCLITests", dependencies: ["NookCLI", "NookProfile", "NookSpec", "NookSupport"]),
        .testTarget(name: "NookCgroupsTests", dependencies: ["NookCgroups", "NookSpec", "NookSupport"]),
        .testTarget(name: "NookStateTests", dependencies: ["NookState", "NookSpec", "NookSupport"]),
        .testTarget(name: "NookDoctorTests", dependencies: ["NookDoctor", "NookCgroups", "NookSpec", "NookSupport"]),
        // Runs the real nook binary as an unprivileged user on the real kernel.
        .testTarget(name: "NookIntegrationTests", dependencies: ["nook"], exclude: ["Resources"]),
    ],
    cxxLanguageStandard: .cxx17
)
