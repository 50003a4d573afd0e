/// What an image asks of the sandboxes that run it: the `config` object of
/// an OCI image configuration (image-spec config.md, "Properties"), as plain
/// values. `NookStore` reads it from the image; resolving compiles it into the
/// Spec, where flags and profiles override it.
public struct ImageConfig: Equatable, Sendable, Codable {
    /// `Entrypoint`: the start of the command; nil when the image sets none.
    public var entrypoint: [String]?
    /// `Cmd`: the default arguments (after the entrypoint), or the command.
    public var cmd: [String]?
    /// `Env`: `NAME=VALUE` entries, in the image's order.
    public var env: [String]
    /// `WorkingDir`: an absolute path inside the image, or nil.
    public var workingDir: String?
    /// `User`: `name`, `uid`, `name:group` or `uid:gid` as the image wrote it,
    /// resolved against the image's /etc/passwd and /etc/group at run time.
    public var user: String?
    /// `ExposedPorts`: `80/tcp`, `53/udp`, sorted. Recorded only.
    public var exposedPorts: [String]
    /// `Labels`.
    public var labels: [String: String]
    /// `StopSignal`, as the image wrote it (`SIGTERM`, `15`).
    public var stopSignal: String?
    /// `Healthcheck` (Docker's field, which OCI configs carry as is).
    public var healthcheck: ImageHealthcheck?
    /// The platform the image was built for (OCI names: `amd64`, `arm64`).
    public var architecture: String
    public var os: String
    public var variant: String?

    public init(entrypoint: [String]? = nil, cmd: [String]? = nil, env: [String] = [], workingDir: String? = nil,
                user: String? = nil, exposedPorts: [String] = [], labels: [String: String] = [:],
                stopSignal: String? = nil, healthcheck: ImageHealthcheck? = nil, architecture: String,
                os: String = "linux", variant: String? = nil) {
        self.entrypoint = entrypoint
        self.cmd = cmd
        self.env = env
        self.workingDir = workingDir
        self.user = user
        self.exposedPorts = exposedPorts
        self.labels = labels
        self.stopSignal = stopSignal
        self.healthcheck = healthcheck
        self.architecture = architecture
        self.os = os
        self.variant = variant
    }

    /// The command the image runs when the caller names none: entrypoint
    /// followed by cmd.
    public var defaultCommand: [String] { (entrypoint ?? []) + (cmd ?? []) }

    /// `linux/amd64`, `linux/arm/v7`.
    public var platform: String { [os, architecture, variant].compactMap { $0 }.joined(separator: "/") }
}
