import CNookCap
import NookSpec
import NookSupport

/// The five capability sets as bit masks for capset(2).
struct CapabilityMasks: Equatable {
    var bounding: UInt64 = 0
    var effective: UInt64 = 0
    var permitted: UInt64 = 0
    var inheritable: UInt64 = 0
    var ambient: UInt64 = 0
    /// The highest capability the running kernel knows.
    var last: Int32 = 40

    /// Masks for the spec's named sets. A name the kernel does not know is
    /// an error for the effective, permitted and ambient sets (the payload
    /// would silently run without it) and skipped for the bounding set.
    init(_ caps: NookSpec.Capabilities?) throws {
        last = nook_cap_last()
        guard let caps else {
            // No section: nothing at all, which is the safe reading.
            return
        }
        func mask(_ names: [String]?, strict: Bool) throws -> UInt64 {
            var m: UInt64 = 0
            for name in names ?? [] {
                let n = nook_cap_from_name(name)
                guard n >= 0, n <= last else {
                    if strict {
                        throw UsageFailure("capability \(name) is not known to this kernel (highest is \(last))")
                    }
                    continue
                }
                m |= 1 << UInt64(n)
            }
            return m
        }
        bounding = try mask(caps.bounding, strict: false)
        effective = try mask(caps.effective, strict: true)
        permitted = try mask(caps.permitted, strict: true)
        inheritable = try mask(caps.inheritable, strict: true)
        ambient = try mask(caps.ambient, strict: true)
    }
}
