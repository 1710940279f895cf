import Testing
@testable import PRGE
#if canImport(Glibc)
import Glibc
#endif

/// The reader on malformed files: every one must throw a PRGEError naming what is wrong, never
/// crash, never allocate what the header claims before checking it.
@Suite struct GGUFHostileTests {
    /// GGUF bytes written field by field, so any field can lie.
    struct Raw {
        var bytes: [UInt8] = []
        init(magic: UInt32 = 0x4655_4747, version: UInt32 = 3, tensors: UInt64, kvs: UInt64) {
            u32(magic); u32(version); u64(tensors); u64(kvs)
        }
        mutating func u8(_ v: UInt8) { bytes.append(v) }
        mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        mutating func str(_ s: String) { u64(UInt64(s.utf8.count)); bytes += s.utf8 }
        /// A key and value type; the payload is written next.
        mutating func kv(_ key: String, _ type: UInt32) { str(key); u32(type) }
        mutating func tensor(_ name: String, dims: [UInt64], type: UInt32 = 0, offset: UInt64 = 0) {
            str(name); u32(UInt32(dims.count)); dims.forEach { u64($0) }; u32(type); u64(offset)
        }
        /// Pads the header to `align`, then `n` bytes of tensor data.
        mutating func data(_ n: Int, align: Int = 32) {
            bytes += [UInt8](repeating: 0, count: (align - bytes.count % align) % align + n)
        }
    }

    /// Parsing `bytes` must throw a format error whose message contains `what`.
    func rejects(_ bytes: [UInt8], _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let e = #expect(throws: PRGEError.self, sourceLocation: sourceLocation) {
            _ = try bytes.withUnsafeBytes { try GGUFFile(bytes: $0, name: "hostile.gguf") }
        }
        #expect(e?.code == .format, sourceLocation: sourceLocation)
        #expect(e?.message.contains(what) == true, "'\(e?.message ?? "")' should say '\(what)'", sourceLocation: sourceLocation)
        #expect(e?.message.hasPrefix("hostile.gguf: ") == true, sourceLocation: sourceLocation)
    }

    /// Parses `bytes` and hands the file to `body` while the bytes are alive (GGUFFile(bytes:)
    /// does not copy them).
    func parse<R>(_ bytes: [UInt8], _ body: (GGUFFile) throws -> R) throws -> R {
        try bytes.withUnsafeBytes { try body(try GGUFFile(bytes: $0)) }
    }

    /// A valid small file whose last tensor ends exactly at the end of the file (32 bytes of f32,
    /// no padding after it), so that every strict prefix cuts something the reader needs.
    static func smallFile() throws -> [UInt8] {
        var w = GGUFWriter()
        w.add("general.architecture", .string("llama"))
        w.add("tokens", .array(.string, [.string("a"), .string("bc")]))
        w.add("n", .uint32(3))
        w.add("scores", .array(.float32, [.float32(1), .float32(2)]))
        try w.addTensor(name: "q", dims: [32, 2], type: .q4_0, data: [UInt8](repeating: 0x11, count: 36))
        try w.addTensor(name: "v", dims: [8], floats: [1, 2, 3, 4, 5, 6, 7, 8])
        return try w.bytes()
    }

    @Test func everyPrefixIsRejected() throws {
        let full = try Self.smallFile()
        #expect(try parse(full) { $0.tensors.count } == 2)
        for n in 0..<full.count {
            let e = #expect(throws: PRGEError.self, "prefix of \(n) bytes") {
                _ = try Array(full.prefix(n)).withUnsafeBytes { try GGUFFile(bytes: $0) }
            }
            #expect(e?.code == .format)
            #expect(e?.message.contains("truncated") == true, "prefix \(n): \(e?.message ?? "")")
        }
    }

    @Test func truncatedFilesOnDiskAreRejected() throws {
        let full = try Self.smallFile()
        let dir = try GGUFTestKit.TempDir()
        for n in [0, 4, 23, 24, 40, full.count / 2, full.count - 1] {
            let path = dir.path + "/cut\(n).gguf"
            let f = fopen(path, "wb")!
            _ = full.withUnsafeBytes { fwrite($0.baseAddress, 1, n, f) }
            fclose(f)
            let e = #expect(throws: PRGEError.self) { _ = try GGUFFile(path: path) }
            #expect(e?.code == .format)
            #expect(e?.message.contains(path) == true)
            #expect(e?.message.contains(n < 24 ? "too short" : "truncated") == true, "\(n): \(e?.message ?? "")")
        }
        let e = #expect(throws: PRGEError.self) { _ = try GGUFFile(path: dir.path + "/absent.gguf") }
        #expect(e?.code == .io)
        #expect(e?.message.contains("No such file or directory") == true)
        let d = #expect(throws: PRGEError.self) { _ = try GGUFFile(path: dir.path) }
        #expect(d?.message.contains("not a regular file") == true)
    }

    /// The builder makes valid files: each test below changes only the field it is about.
    @Test func builderBaselineParses() throws {
        var r = Raw(tensors: 1, kvs: 1)
        r.kv("a", 4); r.u32(1)
        r.tensor("t", dims: [8])
        r.data(32)
        let (a, dims) = try parse(r.bytes) { (try $0.int("a"), $0.tensor("t")?.dims) }
        #expect(a == 1)
        #expect(dims == [8])
    }

    @Test func badMagicAndVersions() {
        rejects(Raw(magic: 0x4755_4747, tensors: 0, kvs: 0).bytes, "bad magic")
        rejects(Raw(magic: 0x4747_5546, tensors: 0, kvs: 0).bytes, "bad magic")
        for v: UInt32 in [0, 1, 4, 0x0300_0000] {   // the last: a big-endian v3 file
            rejects(Raw(version: v, tensors: 0, kvs: 0).bytes, "unsupported GGUF version \(v)")
        }
        rejects(Array("GGUF".utf8), "unexpected end of file")
    }

    @Test func absurdCounts() {
        rejects(Raw(tensors: .max, kvs: 0).bytes, "tensor count 18446744073709551615 exceeds the limit")
        rejects(Raw(tensors: 0, kvs: 1 << 40).bytes, "metadata count 1099511627776 exceeds the limit")
        var r = Raw(tensors: 0, kvs: 1000)
        r.data(100)
        rejects(r.bytes, "metadata count 1000 cannot fit")
        r = Raw(tensors: 1000, kvs: 0)
        r.data(100)
        rejects(r.bytes, "tensor count 1000 cannot fit")

        r = Raw(tensors: 0, kvs: 1)
        r.u64(1 << 60); r.data(32)
        rejects(r.bytes, "length of metadata key #0 1152921504606846976 exceeds the limit")
        r = Raw(tensors: 0, kvs: 1)
        r.kv("s", 8); r.u64(1 << 30)
        rejects(r.bytes, "length of value of 's' 1073741824 exceeds the limit")
        r = Raw(tensors: 0, kvs: 1)
        r.kv("s", 8); r.u64(100); r.str("abc")
        rejects(r.bytes, "unexpected end of file reading value of 's'")
        r = Raw(tensors: 0, kvs: 1)
        r.kv("arr", 9); r.u32(4); r.u64(1 << 25); r.data(64)
        rejects(r.bytes, "metadata 'arr': array of 33554432 elements runs past the end of the file")
        r = Raw(tensors: 0, kvs: 1)
        r.kv("arr", 9); r.u32(8); r.u64(3); r.str("a"); r.str("b")   // strings: 8 bytes each at least
        rejects(r.bytes, "metadata 'arr': array of 3 elements runs past the end of the file")
        r = Raw(tensors: 0, kvs: 1)
        r.kv("arr", 9); r.u32(0); r.u64(1 << 40)
        rejects(r.bytes, "array length of 'arr' 1099511627776 exceeds the limit")
    }

    /// One tensor `t` with the given dims and type, offset 0, and `data` bytes after the header.
    func tensorFile(dims: [UInt64], type: UInt32 = 0, offset: UInt64 = 0, data: Int = 64,
                    alignment: UInt32? = nil) -> [UInt8] {
        var r = Raw(tensors: 1, kvs: alignment == nil ? 0 : 1)
        if let a = alignment { r.kv("general.alignment", 4); r.u32(a) }
        r.tensor("t", dims: dims, type: type, offset: offset)
        r.data(data, align: alignment == 64 ? 64 : 32)   // the invalid alignments: pad as default
        return r.bytes
    }

    @Test func absurdDims() {
        rejects(tensorFile(dims: []), "tensor 't' has 0 dimensions")
        rejects(tensorFile(dims: [1, 1, 1, 1, 1]), "tensor 't' has 5 dimensions")
        rejects(tensorFile(dims: [8, 0]), "tensor 't': dimension 0 out of range")
        rejects(tensorFile(dims: [1 << 32]), "tensor 't': dimension 4294967296 out of range")
        let big = UInt64(Int32.max)
        rejects(tensorFile(dims: [big, big, big, big]), "tensor 't': element count overflows")
        rejects(tensorFile(dims: [48, 2], type: 2), "row length 48 is not a multiple of the Q4_0 block size 32")
        rejects(tensorFile(dims: [1 << 20, 1 << 10]), "tensor 't' (4294967296 bytes at offset 96) extends past the end of the file (160 bytes)")
    }

    @Test func absurdOrMisalignedOffsets() {
        rejects(tensorFile(dims: [4], offset: 1 << 63), "tensor 't': offset 9223372036854775808 out of range")
        rejects(tensorFile(dims: [4], offset: 4), "tensor 't': offset 4 is not aligned to 32")
        rejects(tensorFile(dims: [4], offset: 1 << 40), "extends past the end of the file")
        rejects(tensorFile(dims: [16], offset: 32, data: 63), "tensor 't' (64 bytes at offset 96) extends past the end of the file (127 bytes)")
        rejects(tensorFile(dims: [4], offset: 32, alignment: 64), "tensor 't': offset 32 is not aligned to 64")
        for a: UInt32 in [0, 3, 48, 1 << 20] {
            rejects(tensorFile(dims: [4], alignment: a), "general.alignment must be a power of two")
        }
    }

    @Test func unknownTypes() {
        var r = Raw(tensors: 0, kvs: 1)
        r.kv("k", 13); r.u32(0)
        rejects(r.bytes, "metadata 'k': unknown value type 13")
        r = Raw(tensors: 0, kvs: 1)
        r.kv("k", 9); r.u32(99); r.u64(0)
        rejects(r.bytes, "metadata 'k': unknown array element type 99")
        r = Raw(tensors: 0, kvs: 1)
        r.kv("k", 9); r.u32(9); r.u64(1); r.u32(0); r.u64(0)
        rejects(r.bytes, "metadata 'k': nested arrays are not supported")
        r = Raw(tensors: 0, kvs: 1)
        r.kv("k", 7); r.u8(2)
        rejects(r.bytes, "metadata 'k': bool byte 2 is not 0 or 1")
        for t: UInt32 in [4, 5, 16, 31, 1000] {   // removed Q4_2/Q4_3, i-quants, never assigned
            rejects(tensorFile(dims: [256], type: t), "tensor 't': unknown ggml type \(t)")
        }
    }

    @Test func duplicates() {
        var r = Raw(tensors: 0, kvs: 2)
        r.kv("k", 4); r.u32(1)
        r.kv("k", 4); r.u32(2)
        rejects(r.bytes, "duplicate metadata key 'k'")
        r = Raw(tensors: 2, kvs: 0)
        r.tensor("t", dims: [8])
        r.tensor("t", dims: [8], offset: 32)
        r.data(64)
        rejects(r.bytes, "duplicate tensor 't'")
    }

    /// Random damage to a valid file: whatever the reader makes of it, it throws a PRGEError or
    /// returns a file whose every tensor can be read and dequantized inside the bytes.
    @Test func randomCorruptionNeverCrashes() throws {
        let full = try Self.smallFile()
        var rng = GGUFTestKit.SplitMix(seed: 7)
        var rejected = 0
        for _ in 0..<3000 {
            var b = full
            for _ in 0...rng.below(4) {
                let i = rng.below(b.count)
                switch rng.below(3) {
                case 0: b[i] ^= UInt8(1) << rng.below(8)
                case 1: b[i] = UInt8(truncatingIfNeeded: rng.next())
                default: b[i] = [0x00, 0xff, 0x7f, 0x80][rng.below(4)]
                }
            }
            do {
                try parse(b) { f in
                    for t in f.tensors where t.type.canDequantize { _ = try f.dequantize(t) }
                }
            } catch let e as PRGEError {
                #expect(e.code == .format, "\(e)")
                rejected += 1
            }
        }
        #expect(rejected > 100)   // the damage does get noticed
    }
}
