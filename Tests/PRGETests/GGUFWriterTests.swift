import Testing
@testable import PRGE
#if canImport(Glibc)
import Glibc
#endif

/// GGUFWriter output must read back identically through GGUFFile and through the `gguf` PyPI
/// package. Both sides are compared as the canonical lines of scripts/fixtures/gguf_readback.py.
@Suite struct GGUFWriterTests {
    /// One of each value type, with their extremes, odd floats (subnormal, -0, inf, a NaN with
    /// a payload), unicode and empty strings, and typed arrays including empty ones.
    static let metadata: [(String, GGUFValue)] = [
        ("general.architecture", .string("llama")),
        ("u8", .uint8(255)), ("i8", .int8(-128)), ("u16", .uint16(65535)), ("i16", .int16(-32768)),
        ("u32", .uint32(.max)), ("i32", .int32(.min)), ("u64", .uint64(.max)), ("i64", .int64(.min)),
        ("f32.subnormal", .float32(Float(bitPattern: 0x8001_0203))), ("f32.inf", .float32(.infinity)),
        ("f32.nan", .float32(Float(bitPattern: 0x7fc0_0123))),
        ("f64.pi", .float64(.pi)), ("f64.neg0", .float64(-0.0)),
        ("b.true", .bool(true)), ("b.false", .bool(false)),
        ("s.empty", .string("")), ("s.unicode", .string("héllo, 世界 🦙\n\t\"q\"\0end")),
        ("ключ с пробелом", .int32(7)),
        ("a.u8", .array(.uint8, [.uint8(0), .uint8(255)])),
        ("a.i8", .array(.int8, [.int8(-1), .int8(127)])),
        ("a.u16", .array(.uint16, [.uint16(1)])), ("a.i16", .array(.int16, [.int16(-300)])),
        ("a.u32", .array(.uint32, [.uint32(1), .uint32(.max)])),
        ("a.i32", .array(.int32, [.int32(-5), .int32(0), .int32(5)])),
        ("a.u64", .array(.uint64, [.uint64(1 << 40)])), ("a.i64", .array(.int64, [.int64(-1 << 40)])),
        ("a.f32", .array(.float32, [.float32(0.1), .float32(-.infinity)])),
        ("a.f64", .array(.float64, [.float64(1e300), .float64(-.leastNonzeroMagnitude)])),
        ("a.bool", .array(.bool, [.bool(false), .bool(true)])),
        ("a.str", .array(.string, [.string("<s>"), .string(""), .string("Ġthe")])),
        ("a.empty.f32", .array(.float32, [])), ("a.empty.str", .array(.string, [])),
    ]

    /// Tensors of several types and ranks; sizes chosen so some need padding and some do not.
    static func tensors() -> [(name: String, dims: [Int], type: GGMLType, data: [UInt8])] {
        var rng = GGUFTestKit.SplitMix(seed: 42)
        let shapes: [(String, [Int], GGMLType)] = [
            ("f16.mat", [4, 3], .f16), ("bf16.vec", [7], .bf16), ("q4_0.mat", [64, 2], .q4_0),
            ("q8_0.3d", [32, 2, 3], .q8_0), ("q4_K.4d", [256, 1, 2, 1], .q4_K), ("q6_K.row", [256], .q6_K),
            ("blk.0.attn_q.weight.lora_a", [576, 8], .f32),
        ]
        return shapes.map { name, dims, type in
            let n = type.byteCount(elements: dims.reduce(1, *))!
            return (name, dims, type, (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        }
    }

    static let floats: [Float] = [1, -2.5, 0, .leastNonzeroMagnitude, 3.25e10]

    static func writer(alignment: UInt32?) throws -> GGUFWriter {
        var w = GGUFWriter()
        for (k, v) in metadata { w.add(k, v) }
        if let a = alignment { w.add("general.alignment", .uint32(a)) }
        try w.addTensor(name: "f32.vec", dims: [5], floats: floats)
        for t in tensors() { try w.addTensor(name: t.name, dims: t.dims, type: t.type, data: t.data) }
        return w
    }

    /// The lines gguf_readback.py prints for a file with `w`'s content.
    static func expectedLines(alignment: UInt32?) -> [String] {
        var meta = metadata
        if let a = alignment { meta.append(("general.alignment", .uint32(a))) }
        var out = ["alignment \(alignment ?? 32)"] + meta.map { GGUFTestKit.line($0, $1) }
        let f32 = floats.flatMap { f in (0..<4).map { UInt8(truncatingIfNeeded: f.bitPattern >> (8 * $0)) } }
        out.append(GGUFTestKit.line(tensor: "f32.vec", type: .f32, dims: [5], data: f32))
        out += tensors().map { GGUFTestKit.line(tensor: $0.name, type: $0.type, dims: $0.dims, data: $0.data) }
        return out
    }

    /// The lines for what GGUFFile read.
    static func lines(_ f: GGUFFile) -> [String] {
        ["alignment \(f.alignment)"] + f.metadata.map { GGUFTestKit.line($0.key, $0.value) }
            + f.tensors.map { GGUFTestKit.line(tensor: $0.name, type: $0.type, dims: $0.dims, data: Array(f.data($0))) }
    }

    @Test(arguments: [nil, 8, 64] as [UInt32?])
    func roundTripsThroughReader(alignment: UInt32?) throws {
        let bytes = try Self.writer(alignment: alignment).bytes()
        try bytes.withUnsafeBytes { buf in
            let f = try GGUFFile(bytes: buf)
            #expect(f.version == 3)
            #expect(Self.lines(f) == Self.expectedLines(alignment: alignment))
            // GGUFValue equality too (the lines compare floats by bits; NaN is never == itself).
            for ((key, got), (_, want)) in zip(f.metadata, Self.metadata) where key != "f32.nan" {
                #expect(got == want, "\(key)")
            }
            let align = Int(alignment ?? 32)
            #expect(f.dataOffset % align == 0)
            #expect(f.tensors.allSatisfy { $0.fileOffset % align == 0 })
            #expect(bytes.count % align == 0)
            #expect(try f.dequantize(try #require(f.tensor("f32.vec"))).map(\.bitPattern) == Self.floats.map(\.bitPattern))
        }
    }

    @Test(arguments: [nil, 64] as [UInt32?])
    func ggufPackageReadsWhatWeWrite(alignment: UInt32?) throws {
        let dir = try GGUFTestKit.TempDir()
        let path = dir.path + "/written.gguf"
        try Self.writer(alignment: alignment).write(to: path)
        let script = TestSupport.repoRoot + "/scripts/fixtures/gguf_readback.py"
        let (status, output) = GGUFTestKit.shell("python3 '\(script)' '\(path)'")
        #expect(status == 0, "gguf_readback.py failed: \(output)")
        let got = output.split(separator: "\n").map(String.init)
        let want = Self.expectedLines(alignment: alignment)
        #expect(got.count == want.count)
        for (g, w) in zip(got, want) { #expect(g == w) }
    }

    @Test func writesAtomicallyAndOverwrites() throws {
        let dir = try GGUFTestKit.TempDir()
        let path = dir.path + "/a.gguf"
        var w = GGUFWriter()
        w.add("x", .uint32(1))
        try w.write(to: path)
        w = GGUFWriter()
        w.add("x", .uint32(2))
        try w.addTensor(name: "t", dims: [2], floats: [1, 2])
        try w.write(to: path)
        let f = try GGUFFile(path: path)
        #expect(try f.int("x") == 2)
        #expect(f.tensor("t") != nil)
        #expect(try dir.entries() == ["a.gguf"])   // no temporary file left behind
    }

    @Test func reportsIOErrorsWithThePath() throws {
        let dir = try GGUFTestKit.TempDir()
        let path = dir.path + "/missing/sub/a.gguf"
        let e = #expect(throws: PRGEError.self) { try GGUFWriter().write(to: path) }
        #expect(e?.code == .io)
        #expect(e?.message.contains(path) == true)
        #expect(e?.message.contains("No such file or directory") == true)
    }

    @Test func refusesWhatCannotBeReadBack() throws {
        var w = GGUFWriter()
        func invalid(_ what: String, _ body: () throws -> Void) {
            let e = #expect(throws: PRGEError.self, "\(what)") { try body() }
            #expect(e?.code == .invalidArgument)
            #expect(e?.message.contains(what) == true, "\(e?.message ?? "") should mention \(what)")
        }
        invalid("row length 33 is not a multiple of the Q4_0 block size 32") {
            try w.addTensor(name: "a", dims: [33], type: .q4_0, data: [UInt8](repeating: 0, count: 18))
        }
        invalid("17 bytes of data") { try w.addTensor(name: "a", dims: [32], type: .q4_0, data: [UInt8](repeating: 0, count: 17)) }
        invalid("dims [] must be") { try w.addTensor(name: "a", dims: [], floats: []) }
        invalid("dims [1, 1, 1, 1, 1] must be") { try w.addTensor(name: "a", dims: [1, 1, 1, 1, 1], floats: [0]) }
        invalid("dims [4, 0] must be") { try w.addTensor(name: "a", dims: [4, 0], floats: []) }
        invalid("must be 1...63 bytes") { try w.addTensor(name: String(repeating: "n", count: 64), dims: [1], floats: [0]) }
        try w.addTensor(name: "a", dims: [1], floats: [0])
        invalid("duplicate tensor 'a'") { try w.addTensor(name: "a", dims: [1], floats: [0]) }

        func invalidBytes(_ what: String, _ meta: [(String, GGUFValue)]) {
            var w = GGUFWriter()
            for (k, v) in meta { w.add(k, v) }
            invalid(what) { _ = try w.bytes() }
            invalid(what) { try w.write(to: "/nonexistent-dir/never-created.gguf") }   // before any I/O
        }
        invalidBytes("duplicate metadata key 'k'", [("k", .uint8(1)), ("j", .uint8(1)), ("k", .uint8(2))])
        invalidBytes("general.alignment must be a uint32 power of two", [("general.alignment", .uint32(24))])
        invalidBytes("general.alignment must be a uint32 power of two", [("general.alignment", .uint64(32))])
        invalidBytes("general.alignment must be a uint32 power of two", [("general.alignment", .uint32(0))])
        invalidBytes("metadata 'm': string element in an array of uint8", [("m", .array(.uint8, [.uint8(1), .string("x")]))])
        invalidBytes("metadata 'n': nested arrays", [("n", .array(.array, [.array(.uint8, [])]))])
    }
}

// ---- helpers (also used by GGUFHostileTests), in one namespace to stay out of other suites' way

enum GGUFTestKit {

    /// The readback line of one metadata pair (see scripts/fixtures/gguf_readback.py).
    static func line(_ key: String, _ v: GGUFValue) -> String {
        if case .array(let et, let items) = v {
            return (["kv \(hexString(key)) ARRAY \(typeName(et)) \(items.count)"] + items.map(scalarText)).joined(separator: " ")
        }
        return "kv \(hexString(key)) \(typeName(v.type)) \(scalarText(v))"
    }

    static func line(tensor name: String, type: GGMLType, dims: [Int], data: [UInt8]) -> String {
        "tensor \(hexString(name)) \(type.name) \(dims.map(String.init).joined(separator: ",")) \(hexBytes(data))"
    }

    static func typeName(_ t: GGUFValueType) -> String { "\(t)".uppercased() }

    static func scalarText(_ v: GGUFValue) -> String {
        switch v {
        case .float32(let x): return hexDigits(UInt64(x.bitPattern), 8)
        case .float64(let x): return hexDigits(x.bitPattern, 16)
        case .string(let s): return hexString(s)
        case .bool(let b): return b ? "true" : "false"
        case .uint64(let x): return "\(x)"
        case .array: return "?"
        default: return "\(v.int!)"
        }
    }

    static func hexBytes(_ b: [UInt8]) -> String { b.map { hexDigits(UInt64($0), 2) }.joined() }
    static func hexString(_ s: String) -> String { hexBytes(Array(s.utf8)) }
    static func hexDigits(_ v: UInt64, _ width: Int) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, width - s.count)) + s
    }

    /// Deterministic pseudo-random numbers (SplitMix64), so tests are reproducible.
    struct SplitMix {
        var state: UInt64
        init(seed: UInt64) { state = seed }
        mutating func next() -> UInt64 {
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    }

    /// A fresh directory under /tmp, removed with its files when the value goes away.
    final class TempDir {
        let path: String
        init() throws {
            var template = Array("/tmp/prge-test-XXXXXX".utf8CString)
            guard let p = mkdtemp(&template) else { throw PRGEError.io("mkdtemp failed") }
            path = String(cString: p)
        }
        func entries() throws -> [String] {
            guard let d = opendir(path) else { throw PRGEError.io("opendir '\(path)'") }
            defer { closedir(d) }
            var names: [String] = []
            while let e = readdir(d) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
                if name != "." && name != ".." { names.append(name) }
            }
            return names.sorted()
        }
        deinit {
            for name in (try? entries()) ?? [] { unlink(path + "/" + name) }
            rmdir(path)
        }
    }

    /// Runs `command` with /bin/sh; returns its exit status and its stdout and stderr together.
    static func shell(_ command: String) -> (status: Int32, output: String) {
        guard let dir = try? TempDir() else { return (-1, "cannot create a temporary directory") }
        let out = dir.path + "/output"
        let raw = system("\(command) > '\(out)' 2>&1")
        var text: [UInt8] = []
        if let f = fopen(out, "rb") {
            var buf = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let n = fread(&buf, 1, buf.count, f)
                if n == 0 { break }
                text += buf[0..<n]
            }
            fclose(f)
        }
        // system() returns a wait status: the exit code sits in bits 8...15 when it exited normally.
        let status = raw & 0x7f == 0 ? (raw >> 8) & 0xff : -1
        return (status, String(decoding: text, as: UTF8.self))
    }
}
