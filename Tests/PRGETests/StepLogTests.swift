import Testing
@testable import PRGE
#if canImport(Glibc)
import Glibc
#endif

/// The binary step log (issue 7): checksums, format round trip, and detection of truncated and
/// corrupted logs. No model needed: a small adapter with made-up shapes.
@Suite struct StepLogTests {
    static func hex(_ b: [UInt8]) -> String { b.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() }

    @Test func crc32KnownAnswers() {
        #expect(crc32(Array("123456789".utf8)) == 0xCBF4_3926)   // the CRC-32/ISO-HDLC check value
        #expect(crc32([UInt8]()) == 0)
        #expect(crc32(Array("The quick brown fox jumps over the lazy dog".utf8)) == 0x414F_A339)
    }

    /// FIPS 180-2 appendix B vectors, the empty string, and a 1,000,000-byte message fed in
    /// uneven pieces (exercises the partial-block buffering).
    @Test func sha256KnownAnswers() {
        #expect(Self.hex(SHA256.hash([UInt8]())) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(Self.hex(SHA256.hash(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Self.hex(SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        var s = SHA256()
        let piece = [UInt8](repeating: UInt8(ascii: "a"), count: 1000)
        var fed = 0, k = 1
        while fed < 1_000_000 {
            let n = min(k * 37 % 1000 + 1, 1_000_000 - fed)
            s.update(piece[0..<n])
            fed += n
            k += 1
        }
        #expect(Self.hex(s.finish()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    static func adapter() throws -> LoRAAdapter {
        var c = LoRAConfig()
        c.rank = 2
        c.targets = [.q, .down]
        return try LoRAAdapter(config: c, nLayer: 2) { p in p == .down ? (48, 32) : (32, 32) }
    }

    static func records(_ n: Int, from: UInt64 = 0) -> [StepRecord] {
        (0..<n).map { i in
            StepRecord(seed: 7, step: from + UInt64(i), lr: 0.5, eps: 1e-2, g: [Float(i) - 1.5, 0.25 * Float(i)])
        }
    }

    static let sha = SHA256.hash(Array("model".utf8))

    /// Writes a log of `records` and returns its path.
    static func write(_ records: [StepRecord], in dir: TempDir) throws -> String {
        let path = dir.path + "/steps.bin"
        let w = try StepLogWriter(path: path, header: StepLogHeader(adapter: try adapter(), modelSHA256: sha), step: 0)
        for r in records { try w.append(r) }
        try w.sync()
        return path
    }

    @Test func roundTrip() throws {
        let dir = try TempDir()
        let recs = Self.records(5)
        let c = try StepLog.read(path: try Self.write(recs, in: dir))
        #expect(c.problem == nil)
        #expect(c.records == recs)
        #expect(c.header == StepLogHeader(adapter: try Self.adapter(), modelSHA256: Self.sha))
        #expect(c.header.rngVersion == rngVersion)
        // 8 + 4q bytes of payload per step, as DESIGN.md promises, plus seed, q and CRC.
        #expect(recs[0].logBytes.count == 32 + 4 * 2)
    }

    @Test func truncationIsDetected() throws {
        let dir = try TempDir()
        let path = try Self.write(Self.records(4), in: dir)
        let bytes = try Dataset.readFile(path)
        let header = StepLogHeader(adapter: try Self.adapter(), modelSHA256: Self.sha).bytes.count
        let rec = 40
        for cut in [header + 3 * rec + 39, header + 3 * rec + 10, header + 2 * rec + 1] {
            let c = try StepLog.parse(Array(bytes[..<cut]), file: "steps.bin")
            #expect(c.records == Array(Self.records(4).prefix((cut - header) / rec)))
            #expect(c.problem?.contains("truncated") == true, "\(c.problem ?? "nil")")
            #expect(c.problem?.contains("stopping after step \((cut - header) / rec - 1)") == true, "\(c.problem ?? "nil")")
            #expect(c.goodBytes == header + (cut - header) / rec * rec)
        }
        // A header cut short is no log at all.
        #expect(throws: PRGEError.self) { try StepLog.parse(Array(bytes[..<(header - 1)]), file: "steps.bin") }
    }

    @Test func corruptionIsDetected() throws {
        let dir = try TempDir()
        let path = try Self.write(Self.records(4), in: dir)
        let bytes = try Dataset.readFile(path)
        let header = StepLogHeader(adapter: try Self.adapter(), modelSHA256: Self.sha).bytes.count
        for (offset, why) in [(header + 2 * 40 + 17, "checksum mismatch"), (header + 2 * 40 + 27, "corrupted (q =")] {
            var b = bytes
            b[offset] ^= 0x40
            let c = try StepLog.parse(b, file: "steps.bin")
            #expect(c.records == Array(Self.records(2)))
            #expect(c.problem?.contains(why) == true, "\(c.problem ?? "nil")")
            #expect(c.problem?.contains("record 2") == true)
        }
        var b = bytes
        b[30] ^= 1   // inside the model hash
        expectError(containing: "header checksum") { _ = try StepLog.parse(b, file: "steps.bin") }
        // A record with a valid checksum but a step out of sequence (spliced logs) stops too.
        let spliced = bytes[..<(header + 2 * 40)] + Self.records(1, from: 9)[0].logBytes
        let c = try StepLog.parse(Array(spliced), file: "steps.bin")
        #expect(c.records.count == 2)
        #expect(c.problem?.contains("step 9 does not follow step 1") == true)
    }

    /// Reopening for a trainer at step k keeps the records before k and drops the rest; a gap
    /// or another adapter's log is refused.
    @Test func writerResumesAtStep() throws {
        let dir = try TempDir()
        let path = try Self.write(Self.records(5), in: dir)
        let header = StepLogHeader(adapter: try Self.adapter(), modelSHA256: Self.sha)
        let w = try StepLogWriter(path: path, header: header, step: 3)
        try w.append(StepRecord(seed: 7, step: 3, lr: 1, eps: 1e-2, g: [9, 9]))
        let c = try StepLog.read(path: path)
        #expect(c.problem == nil)
        #expect(c.records.map(\.step) == [0, 1, 2, 3])
        #expect(c.records[3].g == [9, 9])
        expectError(containing: "records are missing") { _ = try StepLogWriter(path: path, header: header, step: 9) }
        var other = header
        other.rank = 4
        expectError(containing: "another model or adapter") { _ = try StepLogWriter(path: path, header: other, step: 2) }
    }

    /// Replay = the same updates in the same order; it starts at the adapter's recorded step.
    @Test func replayAppliesFromTheAdaptersStep() throws {
        let recs = Self.records(6)
        let live = try Self.adapter()
        for r in recs { applyUpdate(r, to: live) }
        let log = StepLogContents(header: StepLogHeader(adapter: live, modelSHA256: Self.sha), records: recs, problem: nil, goodBytes: 0)
        let full = try StepLog.replay(initial: try Self.adapter(), log: log)
        #expect(zip(full.slots, live.slots).allSatisfy { $0.b.map(\.bitPattern) == $1.b.map(\.bitPattern) })
        #expect(StepLog.trainedSteps(full) == 6)

        let mid = try Self.adapter()
        for r in recs.prefix(4) { applyUpdate(r, to: mid) }
        mid.metadata = [(StepLog.stepKey, .uint64(4))]
        let tail = try StepLog.replay(initial: mid, log: log)
        #expect(zip(tail.slots, live.slots).allSatisfy { $0.b.map(\.bitPattern) == $1.b.map(\.bitPattern) })

        mid.metadata = [(StepLog.stepKey, .uint64(9))]
        let late = StepLogContents(header: log.header, records: Self.records(2, from: 10), problem: nil, goodBytes: 0)
        expectError(containing: "starts at step 10") { _ = try StepLog.replay(initial: mid, log: late) }
    }
}

/// Expects `body` to throw a PRGEError whose message contains `text`.
func expectError(containing text: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("no error (expected one containing '\(text)')", sourceLocation: sourceLocation)
    } catch let e as PRGEError {
        #expect(e.message.contains(text), "\(e.message)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
    }
}

/// A fresh directory under /tmp, removed with its files when the value goes away.
final class TempDir {
    let path: String

    init() throws {
        var template = Array("/tmp/prge-test-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw PRGEError.io("mkdtemp failed") }
        path = String(cString: p)
    }

    deinit {
        if let d = opendir(path) {
            while let e = readdir(d) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
                if name != "." && name != ".." { unlink(path + "/" + name) }
            }
            closedir(d)
        }
        rmdir(path)
    }
}
