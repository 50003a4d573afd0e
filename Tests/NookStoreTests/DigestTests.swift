import Testing
@testable import NookStore

@Suite struct DigestTests {
    @Test func theDigestOfKnownBytesIsTheirSHA256() throws {
        #expect(try Digest.of(Array("abc".utf8)).description
            == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(try Digest.of([]).hex == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func onlyLowercaseSha256DigestsAreAccepted() {
        let hex = String(repeating: "a", count: 64)
        #expect(Digest("sha256:" + hex) != nil)
        #expect(Digest("sha256:" + hex.uppercased()) == nil)
        #expect(Digest("sha256:" + hex.dropLast()) == nil)
        #expect(Digest("sha256:../../" + hex.dropFirst(6)) == nil)
        #expect {
            _ = try Digest.parse("sha512:" + hex, what: "layer 1")
        } throws: { error in
            "\(error)" == "layer 1: digest algorithm sha512 is not supported"
        }
    }

    @Test func chainIDsFollowTheImageSpec() throws {
        let a = try Digest.of([1]), b = try Digest.of([2])
        #expect(try Plans.chainID(nil, a) == a)
        #expect(try Plans.chainID(a, b) == (try Digest.of(Array("\(a) \(b)".utf8))))
    }

    @Test(arguments: [
        ("alpine", "alpine:latest"), ("alpine:3", "alpine:3"), ("docker.io/library/alpine:3", "alpine:3"),
        ("docker.io/user/app", "user/app:latest"), ("localhost/x:1", "localhost/x:1"),
        ("quay.io:443/a/b:v1.2", "quay.io:443/a/b:v1.2"),
    ])
    func namesAreKeptInTheirFamiliarForm(input: String, expected: String) {
        #expect(ImageName.normalize(input) == expected)
    }

    @Test(arguments: ["", "Alpine", "a:b:c", "x/", "-x", "localhost/x:", "a b", "x:\(String(repeating: "t", count: 200))",
                      // An image id is never a name (a fresh try named an image after another's id).
                      "sha256:\(String(repeating: "ab", count: 32))", String(repeating: "0", count: 64),
                      "\(String(repeating: "c", count: 64)):1",
                      "localhost/\(String(repeating: "r", count: 250)):1"])
    func invalidNamesAreRefused(input: String) {
        #expect(ImageName.normalize(input) == nil)
    }

    @Test func sizesParseInBinaryUnitsAndPrintInDecimalOnes() {
        #expect(Size.parse("10M") == 10 << 20 && Size.parse("2g") == 2 << 30 && Size.parse("512") == 512)
        #expect(Size.parse("1.5G") == nil && Size.parse("x") == nil)
        #expect(Size.text(7_400_000) == "7.4 MB" && Size.binary(32 << 30) == "32 GiB")
    }
}
