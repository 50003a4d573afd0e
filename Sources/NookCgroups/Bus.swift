// The user's systemd manager over D-Bus (CNookSdBus), in Swift types. The
// manager's API: org.freedesktop.systemd1(5).

#if canImport(Glibc)
import Glibc
#endif
import CNookSdBus
import NookSupport

/// A D-Bus call that failed: what nook asked, where, and the answer.
public struct BusFailure: NookFailure, Equatable {
    public let operation: String
    public let errno: Errno
    /// The D-Bus error name and text, when the other side sent one.
    public let errorName: String
    public let errorMessage: String
    public let hint: String?

    init(_ operation: String, code: Int32, error: nook_bus_error = nook_bus_error(), hint: String? = nil) {
        self.operation = operation
        self.errno = Errno(-code)
        self.errorName = withUnsafeBytes(of: error.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        self.errorMessage = withUnsafeBytes(of: error.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        self.hint = hint
    }

    public var description: String {
        if !errorMessage.isEmpty { return "\(operation): \(errorMessage) (\(errorName))" }
        return "\(operation): \(errno)"
    }
}

/// A connection to the user's systemd manager.
final class UserBus {
    private let handle: OpaquePointer
    /// The address connected to, for messages.
    let address: String
    /// Straight to the manager's private socket, not through a bus.
    let direct: Bool

    private init(handle: OpaquePointer, address: String, direct: Bool) {
        self.handle = handle
        self.address = address
        self.direct = direct
    }

    deinit { nook_bus_close(handle) }

    /// The user bus if the manager answers there, else the manager's
    /// private socket (a host without dbus-user-session has a manager and
    /// no user bus). The failure names both attempts.
    static func connect() throws(BusFailure) -> UserBus {
        var problems: [String] = []
        var last = BusFailure("connect", code: -ENOENT)
        for direct in [false, true] {
            var address = [CChar](repeating: 0, count: 4300)
            var handle: OpaquePointer?
            let rc = nook_bus_open_user(direct ? 1 : 0, &handle, &address, address.count)
            let where_ = String(decoding: address.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard rc == 0, let handle else {
                last = BusFailure("connect to \(where_)", code: rc)
                problems.append("\(where_): \(Errno(-rc))")
                continue
            }
            let bus = UserBus(handle: handle, address: where_, direct: direct)
            do {
                _ = try bus.managerString("Version")
                return bus
            } catch {
                last = error
                problems.append("\(where_): \(error.errorMessage.isEmpty ? error.errno.description : error.errorMessage)")
            }
        }
        throw BusFailure("connect to the systemd user manager (\(problems.joined(separator: "; ")))",
                         code: -last.errno.rawValue)
    }

    func managerString(_ property: String) throws(BusFailure) -> String {
        try string(unit: nil, interface: "org.freedesktop.systemd1.Manager", property: property)
    }

    func string(unit: String?, interface: String, property: String) throws(BusFailure) -> String {
        var out = [CChar](repeating: 0, count: 4096)
        var error = nook_bus_error()
        let rc = nook_bus_get_string(handle, unit, interface, property, &out, out.count, &error)
        guard rc == 0 else { throw BusFailure("read \(unit ?? "the manager")'s \(property)", code: rc, error: error) }
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func u64(unit: String, interface: String, property: String) throws(BusFailure) -> UInt64 {
        var value: UInt64 = 0
        var error = nook_bus_error()
        let rc = nook_bus_get_u64(handle, unit, interface, property, &value, &error)
        guard rc == 0 else { throw BusFailure("read \(unit)'s \(property)", code: rc, error: error) }
        return value
    }

    /// Starts a transient unit and waits for its job; returns the job's
    /// result ("done" when it worked).
    func startTransientUnit(_ name: String, properties: [UnitProperty],
                            timeoutSeconds: UInt64 = 30) throws(BusFailure) -> String {
        // The property structs point into these buffers, which live until
        // the call returns.
        var strings: [UnsafeMutablePointer<CChar>] = []
        var blocks: [UnsafeMutableRawPointer] = []
        defer {
            strings.forEach { free($0) }
            blocks.forEach { free($0) }
        }
        func cString(_ s: String) -> UnsafePointer<CChar> {
            let p = strdup(s)!
            strings.append(p)
            return UnsafePointer(p)
        }
        func copy<T>(_ items: [T]) -> UnsafePointer<T> {
            let raw = malloc(max(MemoryLayout<T>.stride * items.count, 1))!
            let typed = raw.bindMemory(to: T.self, capacity: max(items.count, 1))
            typed.initialize(from: items, count: items.count)
            blocks.append(raw)
            return UnsafePointer(typed)
        }
        let cProperties = properties.map { property -> nook_unit_property in
            var p = nook_unit_property()
            p.name = cString(property.name)
            switch property {
            case .bool(_, let b):
                p.kind = Int32(NOOK_PROPERTY_BOOL.rawValue)
                p.number = b ? 1 : 0
            case .u64(_, let n):
                p.kind = Int32(NOOK_PROPERTY_U64.rawValue)
                p.number = n
            case .string(_, let s):
                p.kind = Int32(NOOK_PROPERTY_STRING.rawValue)
                p.string = cString(s)
            case .u32s(_, let list):
                p.kind = Int32(NOOK_PROPERTY_U32_ARRAY.rawValue)
                p.u32s = copy(list)
                p.count = list.count
            case .bytes(_, let list):
                p.kind = Int32(NOOK_PROPERTY_BYTES.rawValue)
                p.bytes = copy(list)
                p.count = list.count
            }
            return p
        }
        var result = [CChar](repeating: 0, count: 64)
        var error = nook_bus_error()
        let rc = cProperties.withUnsafeBufferPointer { buf in
            nook_bus_start_transient_unit(handle, name, "fail", buf.baseAddress, buf.count, timeoutSeconds * 1_000_000,
                                          &result, result.count, &error)
        }
        guard rc == 0 else { throw BusFailure("start \(name)", code: rc, error: error) }
        return String(decoding: result.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Asks the manager to move `pid` into `unit`'s cgroup, or
    /// `subcgroup` below it (`/sandbox`).
    func attach(_ pid: UInt32, to unit: String, subcgroup: String) throws(BusFailure) {
        var error = nook_bus_error()
        let rc = nook_bus_attach_processes(handle, unit, subcgroup, pid, &error)
        guard rc == 0 else { throw BusFailure("move pid \(pid) into \(unit)\(subcgroup)", code: rc, error: error) }
    }

    /// Stops a unit and waits for its job; nil when it was not loaded
    /// (already gone).
    func stopUnit(_ name: String, timeoutSeconds: UInt64 = 30) throws(BusFailure) -> String? {
        var result = [CChar](repeating: 0, count: 64)
        var error = nook_bus_error()
        let rc = nook_bus_stop_unit(handle, name, "replace", timeoutSeconds * 1_000_000, &result, result.count, &error)
        if rc == -ENOENT { return nil }
        guard rc == 0 else { throw BusFailure("stop \(name)", code: rc, error: error) }
        return String(decoding: result.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// One way of reaching the user's manager, tried: for nook doctor.
public struct ManagerAttempt: Equatable, Sendable {
    public var address: String
    /// The manager's version, when it answered.
    public var version: String?
    /// Its own cgroup, when it answered.
    public var controlGroup: String?
    /// Why it did not answer.
    public var problem: String?

    public init(address: String, version: String? = nil, controlGroup: String? = nil, problem: String? = nil) {
        self.address = address
        self.version = version
        self.controlGroup = controlGroup
        self.problem = problem
    }
}

public enum UserManagerProbe {
    /// Asks the manager for its version and cgroup over the user bus
    /// (privateSocket false) or its private socket.
    public static func attempt(privateSocket: Bool) -> ManagerAttempt {
        var address = [CChar](repeating: 0, count: 4300)
        var handle: OpaquePointer?
        let rc = nook_bus_open_user(privateSocket ? 1 : 0, &handle, &address, address.count)
        let where_ = String(decoding: address.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard rc == 0, let handle else {
            return ManagerAttempt(address: where_, problem: "\(Errno(-rc))")
        }
        defer { nook_bus_close(handle) }
        func get(_ property: String) -> (String?, String?) {
            var out = [CChar](repeating: 0, count: 4096)
            var error = nook_bus_error()
            let rc = nook_bus_get_string(handle, nil, "org.freedesktop.systemd1.Manager", property, &out, out.count,
                                         &error)
            guard rc == 0 else {
                let failure = BusFailure("read \(property)", code: rc, error: error)
                return (nil, failure.errorMessage.isEmpty ? failure.errno.description
                    : "\(failure.errorMessage) (\(failure.errorName))")
            }
            return (String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self), nil)
        }
        let version = get("Version")
        guard let v = version.0 else { return ManagerAttempt(address: where_, problem: version.1) }
        return ManagerAttempt(address: where_, version: v, controlGroup: get("ControlGroup").0)
    }
}

/// The service manager that started this process (a systemd unit with
/// Type=notify), told what it needs to know through sd_notify(3).
public enum ServiceManager {
    /// Sends `state` ("READY=1\nMAINPID=42") and waits until the manager
    /// has read it (up to 5 s); false without a manager ($NOTIFY_SOCKET) or
    /// when it could not be sent, which the error says.
    @discardableResult
    public static func notify(_ state: String) throws(BusFailure) -> Bool {
        let r = nook_sd_notify(state, 5_000_000)
        if r < 0 {
            throw BusFailure("notify the service manager (\(state.split(separator: "\n").joined(separator: " ")))", code: r)
        }
        return r > 0
    }
}
