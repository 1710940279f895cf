import Testing
import PRGEKernels
@testable import PRGE

/// Dequantization must match the `gguf` PyPI package (which mirrors ggml's reference
/// dequantizers) bit for bit. Fixtures: scripts/fixtures/make_quant_fixtures.py.
@Suite struct DequantizeTests {
    static let fixtureTypes: [GGMLType] = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1,
                                           .q2_K, .q3_K, .q4_K, .q5_K, .q6_K]

    static func fixture(_ name: String) throws -> GGUFFile {
        try GGUFFile(path: TestSupport.fixtures + "/quant/\(name).gguf")
    }

    /// The f32 values of an F32 tensor as raw bit patterns, read without our dequantizer.
    static func bits(_ f: GGUFFile, _ t: GGUFTensorInfo) -> [UInt32] {
        let d = f.data(t)
        return (0..<t.elementCount).map { UInt32(littleEndian: d.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) }
    }

    /// Index and values of the first element whose bits differ, nil if all are identical.
    static func firstMismatch(_ got: [Float], _ want: [UInt32]) -> String? {
        guard got.count == want.count else { return "\(got.count) values, want \(want.count)" }
        guard let i = got.indices.first(where: { got[$0].bitPattern != want[$0] }) else { return nil }
        return "element \(i): got \(got[i]) (\(hex(got[i].bitPattern))), want \(Float(bitPattern: want[i])) (\(hex(want[i])))"
    }

    static func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }

    @Test(arguments: fixtureTypes)
    func matchesGGUFPackage(_ type: GGMLType) throws {
        let f = try Self.fixture(type.name)
        let blocks = try #require(f.tensor("blocks"))
        let expected = try #require(f.tensor("expected"))
        #expect(blocks.type == type)
        #expect(expected.type == .f32)
        let want = Self.bits(f, expected)
        #expect(want.count >= 1024)

        let whole = try f.dequantize(blocks)
        #expect(Self.firstMismatch(whole, want) == nil, "\(type.name): \(Self.firstMismatch(whole, want) ?? "")")

        let fromBytes = try dequantize(type, bytes: Array(f.data(blocks)))
        #expect(Self.firstMismatch(fromBytes, want) == nil)

        // The fixture is one row: the row API must give the same, and leave the rest alone.
        var row = [Float](repeating: 7, count: blocks.rowLength + 1)
        try row.withUnsafeMutableBufferPointer { try f.dequantizeRow(blocks, row: 0, into: $0) }
        #expect(Self.firstMismatch(Array(row.dropLast()), want) == nil)
        #expect(row.last == 7)
    }

    /// Rows of the reference model's own Q8_0 and Q4_1 tensors, as gguf dequantizes them.
    @Test func modelRowsMatchGGUFPackage() throws {
        let model = try TestSupport.modelFile()
        let f = try Self.fixture("model_rows")
        var typesSeen: Set<GGMLType> = []
        for t in f.tensors {
            let split = try #require(t.name.lastIndex(of: ":"))
            let name = String(t.name[..<split])
            let row = try #require(Int(t.name[t.name.index(after: split)...]))
            let mt = try #require(model.tensor(name), "model has no tensor \(name)")
            var got = [Float](repeating: .nan, count: mt.rowLength)
            try got.withUnsafeMutableBufferPointer { try model.dequantizeRow(mt, row: row, into: $0) }
            #expect(Self.firstMismatch(got, Self.bits(f, t)) == nil, "\(t.name): \(Self.firstMismatch(got, Self.bits(f, t)) ?? "")")
            typesSeen.insert(mt.type)
        }
        #expect(typesSeen == [.q8_0, .q4_1])
    }

    /// A whole tensor is its rows one after the other.
    @Test func wholeTensorIsItsRows() throws {
        let model = try TestSupport.modelFile()
        let t = try #require(model.tensor("blk.0.attn_k.weight"))
        let all = try model.dequantize(t)
        #expect(all.count == t.elementCount)
        var row = [Float](repeating: 0, count: t.rowLength)
        for r in [0, 1, t.rowCount / 2, t.rowCount - 1] {
            try row.withUnsafeMutableBufferPointer { try model.dequantizeRow(t, row: r, into: $0) }
            #expect(row.map(\.bitPattern) == all[r * t.rowLength ..< (r + 1) * t.rowLength].map(\.bitPattern))
        }
    }

    @Test func refusesBadArguments() throws {
        let f = try Self.fixture("Q4_K")
        let t = try #require(f.tensor("blocks"))
        var small = [Float](repeating: 0, count: t.rowLength - 1)
        #expect(throws: PRGEError.self) {
            try small.withUnsafeMutableBufferPointer { try f.dequantizeRow(t, row: 0, into: $0) }
        }
        var big = [Float](repeating: 0, count: t.rowLength)
        for row in [-1, 1] {
            let e = #expect(throws: PRGEError.self) {
                try big.withUnsafeMutableBufferPointer { try f.dequantizeRow(t, row: row, into: $0) }
            }
            #expect(e?.code == .invalidArgument)
            #expect(e?.message.contains("row \(row) out of range") == true)
        }
        // A tensor of another file must not be read at its offsets in this one.
        let other = try #require(try Self.fixture("Q6_K").tensor("blocks"))
        #expect(throws: PRGEError.self) { _ = try f.dequantize(other) }

        let partial = #expect(throws: PRGEError.self) { _ = try dequantize(.q4_0, bytes: [UInt8](repeating: 0, count: 19)) }
        #expect(partial?.message.contains("whole number of Q4_0 blocks") == true)
        let unsupported = #expect(throws: PRGEError.self) { _ = try dequantize(.q8_K, bytes: [UInt8](repeating: 0, count: 292)) }
        #expect(unsupported?.code == .unsupported)
        #expect(try dequantize(.q4_0, bytes: []) == [])
    }

    /// Every half converts as Swift's own Float16 does (IEEE, NaNs quieted).
    @Test func f16ToF32IsExactForAllHalves() {
        var bad: [UInt16] = []
        for h in 0...UInt16.max where prge_f16_to_f32(h).bitPattern != Float(Float16(bitPattern: h)).bitPattern {
            bad.append(h)
        }
        #expect(bad.isEmpty, "first mismatches: \(bad.prefix(5))")
    }

    /// f32 -> f16 rounds to nearest even, like Swift's Float16(Float); NaN becomes ggml's
    /// canonical quiet NaN with the sign kept.
    @Test func f32ToF16RoundsToNearestEven() {
        func check(_ f: Float) -> Bool {
            let got = prge_f32_to_f16(f)
            if f.isNaN { return got == (f.sign == .minus ? 0xfe00 : 0x7e00) }
            return got == Float16(f).bitPattern
        }
        var inputs: [Float] = [0, -0, .infinity, -.infinity, .nan, -.nan, .greatestFiniteMagnitude,
                               65504, 65519.99, 65520, -65520, 6.1035156e-05, 5.9604645e-08, 2.9802322e-08, 2.9802326e-08]
        // Each half, the midpoint to its successor (the tie cases) and the floats beside it.
        for h in UInt16(0)..<0x7c00 {
            let lo = Float(Float16(bitPattern: h)), hi = Float(Float16(bitPattern: h + 1))
            let mid = (lo + hi) / 2   // exact: f32 has 13 more fraction bits than f16
            inputs += [lo, -lo, mid, -mid, mid.nextUp, mid.nextDown]
        }
        // And a sweep over all f32 bit patterns with a prime stride.
        var u: UInt32 = 0
        while true {
            inputs.append(Float(bitPattern: u))
            let (next, overflow) = u.addingReportingOverflow(9973)
            if overflow { break }
            u = next
        }
        let bad = inputs.filter { !check($0) }
        #expect(bad.isEmpty, "first mismatches: \(bad.prefix(5).map { Self.hex($0.bitPattern) })")
    }

    /// bf16 is the top half of an f32: exact one way, round-to-nearest-even the other.
    @Test func bf16Conversions() {
        func reference(_ u: UInt32) -> UInt16 {
            if u & 0x7fff_ffff > 0x7f80_0000 { return UInt16(u >> 16) | 0x40 }   // quiet NaN
            let top = u >> 16, rest = u & 0xffff
            let up = rest > 0x8000 || (rest == 0x8000 && top & 1 == 1)
            return UInt16(truncatingIfNeeded: top + (up ? 1 : 0))
        }
        var bad: [UInt32] = []
        var u: UInt32 = 0
        while true {
            for v in [u, u | 0x8000, u | 0x7fff, u | 0x8001] where prge_f32_to_bf16(Float(bitPattern: v)) != reference(v) {
                bad.append(v)
            }
            let (next, overflow) = u.addingReportingOverflow(0x1_0000 * 7 + 0x8000)
            if overflow { break }
            u = next
        }
        #expect(bad.isEmpty, "first mismatches: \(bad.prefix(5).map(Self.hex))")
        for h in stride(from: 0, through: Int(UInt16.max), by: 1) {
            if prge_bf16_to_f32(UInt16(h)).bitPattern != UInt32(h) << 16 { bad.append(UInt32(h)) }
        }
        #expect(bad.isEmpty)
    }
}
