#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import NookStore
import NookSupport

/// What a pull or push shows while it works, on stderr: a bar per layer on
/// a terminal (redrawn in place a few times a second), a line per step
/// otherwise, or nothing (`--quiet`).
public final class TransferProgress: @unchecked Sendable {
    public enum Mode: Sendable { case bars, lines, quiet }

    enum State {
        case waiting, present, transferring, transferred, unpacking, done, skipped
    }

    final class Row {
        let label: String
        let total: UInt64
        var state = State.waiting
        var base: UInt64 = 0
        var counter: ProgressCounter?
        init(label: String, total: UInt64) {
            self.label = label
            self.total = total
        }
        var bytes: UInt64 { min(total, base + (counter?.value ?? 0)) }
    }

    public let mode: Mode
    private var rows: [Row] = []
    /// How many of the rows are layers (the rest: the config).
    private var layerCount = 0
    private var mutex = pthread_mutex_t()
    private var drawn = 0
    private var stopped = false
    private let verb: String
    private let group = DispatchGroup()

    /// `verb`: "downloading" or "uploading".
    public init(mode: Mode, verb: String) {
        self.mode = mode
        self.verb = verb
        pthread_mutex_init(&mutex, nil)
    }

    deinit { pthread_mutex_destroy(&mutex) }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body()
    }

    /// A line of its own (plain modes print it, bars print it above).
    public func say(_ text: String) {
        guard mode != .quiet else { return }
        locked {
            clear()
            writeStderr(text + "\n")
            draw()
        }
    }

    /// One row per blob; the last `configs` of them are the image's config
    /// (a push sends it too), named so rather than counted as a layer.
    func start(_ layers: [(label: String, total: UInt64)], configs: Int = 0) {
        locked {
            rows = layers.map { Row(label: $0.label, total: $0.total) }
            layerCount = rows.count - configs
        }
        guard mode == .bars else { return }
        group.enter()
        DispatchQueue.global().async { [self] in
            defer { group.leave() }
            while !locked({ stopped }) {
                locked {
                    clear()
                    draw()
                }
                usleep(200_000)
            }
        }
    }

    func set(_ index: Int, _ state: State, counter: ProgressCounter? = nil, base: UInt64 = 0) {
        let line: String? = locked {
            guard index < rows.count else { return nil }
            let row = rows[index]
            row.state = state
            if let counter {
                row.counter = counter
                row.base = base
            }
            guard mode == .lines else { return nil }
            let n = index < layerCount ? "layer \(index + 1)/\(layerCount)" : "config"
            switch state {
            case .present: return "\(n) \(row.label): already in the store"
            case .skipped: return "\(n) \(row.label): already in the registry"
            case .transferring where base > 0: return "\(n) \(row.label): resuming at \(Size.text(base)) of \(Size.text(row.total))"
            case .transferring: return "\(n) \(row.label): \(verb) \(Size.text(row.total))"
            case .transferred: return "\(n) \(row.label): \(verb == "uploading" ? "uploaded" : "downloaded")"
            case .done where verb == "downloading": return "\(n) \(row.label): unpacked"
            default: return nil
            }
        }
        if let line { writeStderr(line + "\n") }
    }

    /// Ends the bars (drawn once more, final).
    public func stop() {
        guard mode == .bars else { return }
        locked { stopped = true }
        group.wait()
        locked {
            clear()
            draw()
            drawn = 0
        }
    }

    // Called with the mutex held.
    private func clear() {
        guard mode == .bars, drawn > 0 else { return }
        writeStderr("\u{1b}[\(drawn)A\u{1b}[J")
        drawn = 0
    }

    private func draw() {
        guard mode == .bars, !rows.isEmpty else { return }
        var text = ""
        for row in rows {
            let width = 24
            let fraction = row.total == 0 ? 1 : Double(row.bytes) / Double(row.total)
            let full: Int
            let status: String
            switch row.state {
            case .waiting: (full, status) = (0, "waiting")
            case .present: (full, status) = (width, "already in the store")
            case .skipped: (full, status) = (width, "already in the registry")
            case .transferring: (full, status) = (Int(fraction * Double(width)), "\(Size.text(row.bytes)) / \(Size.text(row.total))")
            case .transferred: (full, status) = (width, verb == "uploading" ? "uploaded" : "downloaded, waiting to unpack")
            case .unpacking: (full, status) = (width, "unpacking")
            case .done: (full, status) = (width, verb == "uploading" ? "uploaded" : "done")
            }
            let bar = String(repeating: "=", count: full) + String(repeating: " ", count: width - full)
            text += "\(row.label) [\(bar)] \(status)\n"
        }
        writeStderr(text)
        drawn = rows.count
    }
}
