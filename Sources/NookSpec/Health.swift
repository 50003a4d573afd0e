// A detached container's health check: what the image's Healthcheck (the
// Docker image config's `Healthcheck`, which OCI image configs carry
// unchanged: Test, Interval, Timeout, StartPeriod, Retries), a profile's
// [health] and the --health-* flags ask for, resolved into one value that
// the container's monitor runs.
import NookSupport

/// What to do when a container turns unhealthy.
public enum HealthAction: String, Codable, Sendable, CaseIterable {
    /// Record it (and say so in `nook ps`, `inspect` and `events`).
    case none
    /// Kill the container, as `nook kill` does; its restart policy does not start it again.
    case kill
    /// Stop the command (its stop signal, then SIGKILL after the stop
    /// timeout) and start it again, whatever the restart policy says.
    case restart
}

/// A resolved health check: a command run inside the container, like
/// `nook exec`, every `interval` (counted from the end of the last check).
/// Exit status 0 is a pass; anything else, or running longer than
/// `timeout`, a failure. `retries` failures in a row make the container
/// unhealthy; failures within `startPeriod` of a start do not count until
/// a check has passed.
public struct HealthCheck: Codable, Equatable, Sendable {
    /// The program and its arguments (a shell form is `/bin/sh -c TEXT`).
    public var command: [String]
    /// Seconds.
    public var interval: Double
    public var timeout: Double
    public var startPeriod: Double
    public var retries: Int
    public var onUnhealthy: HealthAction
    /// Where the command came from, for messages: `--health-cmd`,
    /// `health.command (file:line:col)`, `the image's Healthcheck`.
    public var source: String

    public static let defaultInterval = 30.0
    public static let defaultTimeout = 30.0
    public static let defaultRetries = 3
    /// Docker's lower bound for intervals and timeouts (1 ms); nook's upper
    /// bound is a year, and 1000 retries.
    public static let shortest = 0.001
    public static let longest = 365.0 * 86400
    public static let maximumRetries = 1000

    public init(command: [String], interval: Double = defaultInterval, timeout: Double = defaultTimeout,
                startPeriod: Double = 0, retries: Int = defaultRetries, onUnhealthy: HealthAction = .none,
                source: String) {
        self.command = command
        self.interval = interval
        self.timeout = timeout
        self.startPeriod = startPeriod
        self.retries = retries
        self.onUnhealthy = onUnhealthy
        self.source = source
    }

    /// Why this is not a check nook runs (a value out of range), or nil.
    public var problem: String? {
        guard let first = command.first, !first.isEmpty else { return "its command is empty" }
        for (name, value, low) in [("interval", interval, Self.shortest), ("timeout", timeout, Self.shortest),
                                   ("start period", startPeriod, 0)]
        where !(value.isFinite && value >= low && value <= Self.longest) {
            return "its \(name) \(value) is out of range"
        }
        guard (1...Self.maximumRetries).contains(retries) else { return "its retries \(retries) are out of range" }
        return nil
    }

    /// One line for people and for `--dry-run`'s annotation, as JSON.
    public var json: String {
        "{\"command\":[" + command.map(jsonString).joined(separator: ",") + "],"
            + "\"interval\":\"\(Durations.text(interval))\",\"timeout\":\"\(Durations.text(timeout))\","
            + "\"startPeriod\":\"\(Durations.text(startPeriod))\",\"retries\":\(retries),"
            + "\"onUnhealthy\":\"\(onUnhealthy.rawValue)\",\"source\":\(jsonString(source))}"
    }
}

/// The health check settings of one layer (flags, or a profile), every
/// field optional so that flags can be laid over a profile.
public struct HealthRequest: Equatable, Sendable {
    public var command: [String]?
    /// false: no check at all, not even the image's (`--no-healthcheck`).
    public var enabled: Bool?
    public var interval: Double?
    public var timeout: Double?
    public var startPeriod: Double?
    public var retries: Int?
    public var onUnhealthy: HealthAction?
    /// Where each set field was given (`--health-interval`, or the
    /// profile key with its file and line), by field name.
    public var origins: [String: String] = [:]

    public init() {}

    public var isEmpty: Bool {
        command == nil && enabled == nil && interval == nil && timeout == nil && startPeriod == nil && retries == nil
            && onUnhealthy == nil
    }

    /// These settings with `top`'s set fields laid over them.
    public func overlaid(by top: HealthRequest) -> HealthRequest {
        var r = self
        r.command = top.command ?? command
        r.enabled = top.enabled ?? enabled
        r.interval = top.interval ?? interval
        r.timeout = top.timeout ?? timeout
        r.startPeriod = top.startPeriod ?? startPeriod
        r.retries = top.retries ?? retries
        r.onUnhealthy = top.onUnhealthy ?? onUnhealthy
        r.origins.merge(top.origins) { _, new in new }
        // A command given above replaces the one below, and turns the check
        // back on; turning it off above wins over a command below.
        if top.command != nil && top.enabled == nil { r.enabled = nil }
        return r
    }
}

/// The image config's `Healthcheck` (durations in nanoseconds, 0 or
/// missing for "the default").
public struct ImageHealthcheck: Equatable, Sendable, Codable {
    /// `["CMD", prog, args...]`, `["CMD-SHELL", text]`, `["NONE"]`, or
    /// empty (inherit: none here).
    public var test: [String]
    public var interval: Int64?
    public var timeout: Int64?
    public var startPeriod: Int64?
    public var retries: Int?

    public init(test: [String], interval: Int64? = nil, timeout: Int64? = nil, startPeriod: Int64? = nil,
                retries: Int? = nil) {
        self.test = test
        self.interval = interval
        self.timeout = timeout
        self.startPeriod = startPeriod
        self.retries = retries
    }
}

/// Durations as flags and profiles write them: a number and a unit, in
/// sequence, as Go (and so docker) writes them: `30s`, `500ms`, `1m30s`,
/// `1.5h`, `2h`.
public enum Durations {
    static let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]

    /// Seconds, or nil when `text` is not such a duration (a sign, a
    /// space, a missing or unknown unit).
    public static func seconds(_ text: String) -> Double? {
        var rest = Substring(text)
        var total = 0.0
        guard !rest.isEmpty else { return nil }
        while !rest.isEmpty {
            let number = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
            guard !number.isEmpty, number.first != ".", let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            guard let (unit, scale) = units.first(where: { rest.hasPrefix($0.0) && !isLonger($0.0, in: rest) }) else {
                return nil
            }
            rest = rest.dropFirst(unit.count)
            total += value * scale
        }
        return total.isFinite ? total : nil
    }

    /// "m" must not take the "m" of "ms".
    static func isLonger(_ unit: String, in rest: Substring) -> Bool {
        unit == "m" && rest.hasPrefix("ms")
    }

    /// `30s`, `500ms`, `1m30s`, `2h`: the shortest exact spelling.
    public static func text(_ seconds: Double) -> String {
        let ms = (seconds * 1000).rounded()
        if ms == 0 { return "0s" }
        if ms.truncatingRemainder(dividingBy: 1000) != 0 {
            return ms >= 1000 ? "\(Int(ms) / 1000)s\(Int(ms) % 1000)ms" : "\(Int(ms))ms"
        }
        var s = Int(ms / 1000)
        var out = ""
        if s >= 3600 {
            out += "\(s / 3600)h"
            s %= 3600
        }
        if s >= 60 {
            out += "\(s / 60)m"
            s %= 60
        }
        if s > 0 { out += "\(s)s" }
        return out
    }
}

extension Annotation {
    /// The resolved health check of a detached container, as JSON.
    public static let health = "org.nook.health"
}

extension Resolver {
    /// The check a detached container runs: the request's command, or the
    /// image's Healthcheck; each setting from the request, else the
    /// image's, else the default. nil when there is none or it is off.
    public static func health(_ request: HealthRequest, image: ImageConfig?) throws(ResolveError) -> HealthCheck? {
        if request.enabled == false { return nil }
        var command = request.command
        var source = request.origins["command"] ?? "the health check"
        let fromImage = image?.healthcheck
        if command == nil, let test = fromImage?.test, let kind = test.first {
            let rest = Array(test.dropFirst())
            switch kind {
            case "NONE": break
            case "CMD":
                guard let program = rest.first, !program.isEmpty else {
                    throw imageProblem("Test is [\"CMD\"] without a program")
                }
                command = rest
            case "CMD-SHELL":
                let text = rest.joined(separator: " ")
                guard !text.isEmpty else { throw imageProblem("Test is [\"CMD-SHELL\"] without a command") }
                command = ["/bin/sh", "-c", text]
            default:
                throw imageProblem("Test starts with \(jsonString(kind)); expected CMD, CMD-SHELL or NONE")
            }
            source = "the image's Healthcheck"
        }
        guard let command else {
            if let (field, origin) = request.origins.first(where: { $0.key != "command" && $0.key != "enabled" }) {
                throw ResolveError("\(origin): there is no health check for its \(field) to apply to "
                    + (image == nil ? "" : "(the image has none)"),
                    hint: "give the check's command too (--health-cmd, or command in the profile's [health])")
            }
            return nil
        }
        guard let first = command.first, !first.isEmpty else {
            throw ResolveError("\(source): the health check's command is empty",
                               hint: "give the program to run, or --no-healthcheck to have no check")
        }
        var check = HealthCheck(command: command, source: source)
        // Each setting on its own, as docker merges them: the request's,
        // else the image's (even for a command of the request's own).
        // A setting the request gives is never read from the image, so a
        // flag can stand in for an image's bad value.
        if let v = request.interval { check.interval = v }
        else if let v = try imageDuration(fromImage?.interval, "Interval") { check.interval = v }
        if let v = request.timeout { check.timeout = v }
        else if let v = try imageDuration(fromImage?.timeout, "Timeout") { check.timeout = v }
        if let v = request.startPeriod { check.startPeriod = v }
        else if let v = try imageDuration(fromImage?.startPeriod, "StartPeriod") { check.startPeriod = v }
        if let n = request.retries {
            check.retries = n
        } else if let n = fromImage?.retries, n != 0 {
            guard (1...HealthCheck.maximumRetries).contains(n) else {
                throw imageProblem("Retries is \(n); expected 0 (the default) to \(HealthCheck.maximumRetries)")
            }
            check.retries = n
        }
        check.onUnhealthy = request.onUnhealthy ?? .none
        if let problem = check.problem { throw ResolveError("\(source): \(problem)") }
        return check
    }

    /// An image's duration in nanoseconds; 0 and missing are the default.
    static func imageDuration(_ ns: Int64?, _ field: String) throws(ResolveError) -> Double? {
        guard let ns, ns != 0 else { return nil }
        let seconds = Double(ns) / 1e9
        guard seconds >= HealthCheck.shortest, seconds <= HealthCheck.longest else {
            throw imageProblem("\(field) is \(ns) ns; expected 0 (the default) or 1ms (1000000) to a year")
        }
        return seconds
    }

    static let imageHealthcheck = "the image's Healthcheck"

    static func imageProblem(_ what: String) -> ResolveError {
        ResolveError("\(imageHealthcheck): \(what)",
                     hint: "--health-cmd (and --health-interval, ...) replace it; --no-healthcheck runs none")
    }
}
