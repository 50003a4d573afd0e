import Foundation
import Testing

@Suite(.enabled(if: Harness.ready, "needs a test user with subordinate ids and the nook binary (script/test)"))
struct EncodingTests {
    let h = Harness.shared

    // The attack report's S3: bytes that are not UTF-8 were replaced, and
    // nook bound a directory named U+FFFD for one named \xff.
    @Test func namesThatAreNotUTF8AreRefusedNotReplaced() {
        let ws = h.workspace()
        let out = h.run(["/bin/bash", "-c", """
            mkdir $'\\xff' $'\\xef\\xbf\\xbd'
            (cd $'\\xff' && $NOOK run -- touch written; echo "cwd=$?")
            $NOOK run -- printf %s $'\\xff\\xfe'; echo "arg=$?"
            X=$'\\xff' $NOOK run -- sh -c 'echo "X=${X-unset}"'
            ls $'\\xef\\xbf\\xbd'
            """], in: ws, stdin: nil, env: ["NOOK": h.binary], as: nil, timeout: 60)
        #expect(out.stdout.contains("cwd=125"), "\(out)")
        #expect(out.stdout.contains("arg=125"), "\(out)")
        #expect(out.stdout.contains("X=unset"), "\(out)")
        #expect(!out.stdout.contains("written"), "the sandbox wrote into the U+FFFD directory: \(out)")
        #expect(out.stderr.contains("is not valid UTF-8"), "\(out)")
        #expect(out.stderr.contains("environment variable X is not valid UTF-8"), "\(out)")
    }
}
