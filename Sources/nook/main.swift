#if canImport(Glibc)
import Glibc
#endif
import NookCLI
import NookSupport

// Arguments are taken as bytes and refused unless they are UTF-8: Swift's
// CommandLine.arguments would replace bad bytes, and nook would then act on
// a different file than the one named (a directory called \xff becoming
// one called U+FFFD).
var arguments: [String] = []
for i in 0..<Int(CommandLine.argc) {
    guard let raw = CommandLine.unsafeArgv[i] else { break }
    guard let text = strictUTF8(cString: raw) else {
        let bytes = UnsafeBufferPointer(start: UnsafeRawPointer(raw).assumingMemoryBound(to: UInt8.self), count: strlen(raw))
        writeStderr("nook: argument \(i) is not valid UTF-8: \(escapedBytes(bytes))\n"
            + "  hint: nook takes names and paths as UTF-8; rename the file, or reach it through a UTF-8 path\n")
        exit(125)
    }
    arguments.append(text)
}
exit(Main.main(arguments))
