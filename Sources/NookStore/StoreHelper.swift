#if canImport(Glibc)
import Glibc
#endif
import CNookSys
import NookSupport

/// The store's work that must run as root of the user's user namespace:
/// creating files with the image's owners, and removing them. The CLI runs
/// it as `nook __store ARGS` through Launcher.unshare (a fresh exec of nook,
/// single-threaded), and HelperContext.runHelper is how the store asks:
///
///     unpack JOB      unpack one layer as JOB (an UnpackJob, JSON) says,
///                     writing an UnpackReport where the job says
///     remove PATH...  remove each path and everything below it
public enum StoreHelper {
    /// The internal subcommand's name.
    public static let command = "__store"

    /// Runs the helper; returns its exit status.
    public static func main(_ arguments: [String]) -> Int32 {
        guard let verb = arguments.first else {
            writeStderr("nook \(command): internal command; nook runs it itself\n")
            return 2
        }
        switch verb {
        case "unpack" where arguments.count == 2:
            return unpack(jobPath: arguments[1])
        case "remove":
            return remove(Array(arguments.dropFirst()))
        default:
            writeStderr("nook \(command): unknown request \(verb)\n")
            return 2
        }
    }

    static func unpack(jobPath: String) -> Int32 {
        let job: UnpackJob
        do {
            job = try JSON.decode(UnpackJob.self, try FS.readFile(jobPath, max: 64 << 20), what: jobPath)
        } catch {
            writeStderr("nook: \(error)\n")
            return 1
        }
        // Run in-process (the store's own tests) the job's parent is this process.
        if job.parent != getpid(), nook_die_with_parent(job.parent) != 0 { return 1 }
        var report: UnpackReport
        var status: Int32 = 0
        do {
            let extractor = try Extractor(job: job)
            report = try extractor.run()
        } catch {
            report = UnpackReport()
            report.failure = UnpackReport.Failure(error)
            status = 1
        }
        do {
            try FS.writeAtomically(job.report, JSON.encode(report), mode: 0o600)
        } catch {
            writeStderr("nook: \(error)\n")
            return 1
        }
        return status
    }

    static func remove(_ paths: [String]) -> Int32 {
        var status: Int32 = 0
        for path in paths {
            let (parent, name) = FS.split(path)
            let fd = open(parent.isEmpty ? "." : parent, NOOK_O_PATH | O_DIRECTORY | O_CLOEXEC)
            guard fd >= 0 else {
                writeStderr("nook: open \(parent): \(Errno.current)\n")
                status = 1
                continue
            }
            defer { close(fd) }
            do {
                try FS.removeTree(fd, name)
            } catch {
                writeStderr("nook: \(error)\n")
                status = 1
            }
        }
        return status
    }
}
