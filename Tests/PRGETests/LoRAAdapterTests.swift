import Testing
@testable import PRGE
#if canImport(Glibc)
import Glibc
#endif

/// LoRA-FA adapters: shapes and initialisation, and the llama.cpp adapter file both ways.
@Suite struct LoRAAdapterTests {
    /// SmolLM2-135M: d_model 576, 3 KV heads × 64, FFN 1536, 30 layers.
    static func smolShape(_ p: Projection) -> (dIn: Int, dOut: Int) {
        switch p {
        case .q, .o: return (576, 576)
        case .k, .v: return (576, 192)
        case .gate, .up: return (576, 1536)
        case .down: return (1536, 576)
        }
    }

    static func adapter(_ edit: (inout LoRAConfig) -> Void = { _ in }) throws -> LoRAAdapter {
        var c = LoRAConfig()
        edit(&c)
        return try LoRAAdapter(config: c, nLayer: 30, shape: smolShape)
    }

    static func reload(_ bytes: [UInt8], nLayer: Int = 30) throws -> LoRAAdapter {
        try bytes.withUnsafeBytes { raw in
            let f = try GGUFFile(bytes: raw, name: "adapter.gguf")
            return try AdapterFile.load(f, architecture: "llama", nLayer: nLayer) { _, p in smolShape(p) }
        }
    }

    static func expectFormatError(_ bytes: [UInt8], _ code: PRGEError.Code = .format, containing text: String,
                                  sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try reload(bytes)
            Issue.record("loaded a bad adapter (expected: \(text))", sourceLocation: sourceLocation)
        } catch let e as PRGEError {
            #expect(e.code == code, "\(e)", sourceLocation: sourceLocation)
            #expect(e.message.contains(text), "\(e)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func projectionNames() {
        #expect(Projection.allCases.map(\.ggufName) == ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"])
        for p in Projection.allCases {
            #expect(Projection(name: p.ggufName) == p)
            #expect(Projection(name: p.shortName) == p)
        }
        #expect(Projection(name: "wq") == nil)
    }

    @Test func defaultAdapterShapes() throws {
        let ad = try Self.adapter()
        #expect(ad.slots.count == 30 * 7)
        #expect(ad.scale == 2)
        #expect(ad.trainableCount == 30 * 16 * (576 + 192 + 192 + 576 + 1536 + 1536 + 576))
        for (i, s) in ad.slots.enumerated() {
            #expect(s.index == i)
            #expect(s.layer == i / 7 && s.proj.rawValue == i % 7, "slot order is layer-major, then projection")
            #expect(ad.slot(layer: s.layer, s.proj) === s)
            let (dIn, dOut) = Self.smolShape(s.proj)
            #expect(s.dIn == dIn && s.dOut == dOut && s.rank == 16)
            #expect(s.a.count == 16 * dIn && s.b.count == dOut * 16)
            #expect(s.b.allSatisfy { $0 == 0 })
        }
        #expect(ad.slot(layer: 30, .q) == nil && ad.slot(layer: -1, .q) == nil)
    }

    @Test func kaimingUniformInit() throws {
        let ad = try Self.adapter { $0.seed = 9 }
        for s in [ad.slot(layer: 0, .q)!, ad.slot(layer: 29, .down)!] {
            let bound = 1 / Float(s.dIn).squareRoot()
            #expect(s.a.allSatisfy { abs($0) <= bound })
            let n = Double(s.a.count)
            let mean = s.a.reduce(0.0) { $0 + Double($1) } / n
            let variance = s.a.reduce(0.0) { $0 + Double($1) * Double($1) } / n
            let expected = Double(bound * bound) / 3
            #expect(abs(mean) < 0.02 * Double(bound))                 // ≥ 4 standard errors
            #expect(abs(variance / expected - 1) < 0.03, "variance \(variance), expected \(expected)")
            // A is the documented stream: slot i's RNGKey.loraInit(seed, i), uniform in ±bound.
            var again = [Float](repeating: 0, count: s.a.count)
            again.withUnsafeMutableBufferPointer {
                fillUniform(into: $0, key: .loraInit(seed: 9, tensor: UInt32(s.index)), start: 0, lo: -bound, hi: bound)
            }
            #expect(again == s.a)
        }
        #expect(ad.slot(layer: 0, .q)!.a != ad.slot(layer: 1, .q)!.a)
        #expect(try Self.adapter { $0.seed = 10 }.slots[0].a != ad.slots[0].a)
    }

    /// a_scale multiplies A's init bound per projection: the same stream, scaled (by a power of
    /// two here, so bit for bit); other projections keep their A; scales of 1 and of projections
    /// that are not targets drop out of the normalised config.
    @Test func aScaleScalesTheInitOfA() throws {
        let plain = try Self.adapter { $0.seed = 9 }
        let scaled = try Self.adapter { $0.seed = 9; $0.aScale = [.v: 0.25, .down: 1] }
        #expect(scaled.config.aScale == [.v: 0.25])
        for (x, y) in zip(plain.slots, scaled.slots) {
            #expect(y.a == (x.proj == .v ? x.a.map { $0 * 0.25 } : x.a), "layer \(x.layer) \(x.proj.shortName)")
        }
        let noV = try Self.adapter { $0.targets = [.q]; $0.aScale = [.v: 0.5] }
        #expect(noV.config.aScale.isEmpty)
    }

    @Test func subsetOfLayersAndTargets() throws {
        let ad = try Self.adapter { $0.targets = [.v, .q]; $0.layers = [5, 2]; $0.rank = 4; $0.alpha = 4 }
        #expect(ad.config.targets == [.q, .v] && ad.config.layers == [2, 5], "config is normalised")
        #expect(ad.slots.map { "\($0.layer)\($0.proj.shortName)" } == ["2q", "2v", "5q", "5v"])
        #expect(ad.slot(layer: 2, .k) == nil && ad.slot(layer: 3, .q) == nil)
        #expect(ad.scale == 1)
    }

    @Test func badConfigsAreRefused() {
        let edits: [(String, (inout LoRAConfig) -> Void)] = [
            ("rank", { $0.rank = 0 }), ("rank", { $0.rank = 5000 }), ("alpha", { $0.alpha = .nan }), ("alpha", { $0.alpha = 0 }),
            ("no target", { $0.targets = [] }), ("duplicate target", { $0.targets = [.q, .q] }),
            ("layer 30", { $0.layers = [30] }), ("layer -31", { $0.layers = [-31] }), ("duplicate layer", { $0.layers = [1, 1] }),
            ("empty layer list", { $0.layers = [] }),
            ("a_scale of v", { $0.aScale = [.v: 0] }), ("a_scale of q", { $0.aScale = [.q: .infinity] }),
        ]
        for (text, edit) in edits {
            #expect(throws: PRGEError.self, "\(text)") { try Self.adapter(edit) }
            do { _ = try Self.adapter(edit) } catch let e as PRGEError {
                #expect(e.code == .invalidArgument && e.message.contains(text), "\(e)")
            } catch {}
        }
    }

    // ---- files ------------------------------------------------------------------------------

    /// An adapter with non-zero B (as after training) and metadata.
    static func trained() throws -> LoRAAdapter {
        let ad = try adapter {
            $0.seed = 77; $0.rank = 8; $0.alpha = 16; $0.targets = [.q, .v, .down]; $0.layers = [0, 7, 29]; $0.aScale = [.v: 0.5]
        }
        for s in ad.slots {
            s.b.withUnsafeMutableBufferPointer { fillNormal(into: $0, key: RNGKey(seed: 1, step: 2, query: 3, tensor: UInt32(s.index)), start: 0) }
        }
        ad.metadata = [("prge.step", .uint64(1234)), ("prge.lr", .float32(0.05)), ("prge.estimator", .string("prge"))]
        return ad
    }

    @Test func saveLoadRoundTripIsBitExact() throws {
        let ad = try Self.trained()
        let back = try Self.reload(try AdapterFile.bytes(ad))
        #expect(back.config == ad.config)
        #expect(back.slots.count == ad.slots.count)
        for (x, y) in zip(ad.slots, back.slots) {
            #expect(x.layer == y.layer && x.proj == y.proj && x.dIn == y.dIn && x.dOut == y.dOut && x.rank == y.rank)
            #expect(x.a.map(\.bitPattern) == y.a.map(\.bitPattern))
            #expect(x.b.map(\.bitPattern) == y.b.map(\.bitPattern))
        }
        #expect(back.metadata.map(\.0) == ad.metadata.map(\.0))
        #expect(back.metadata.map(\.1) == ad.metadata.map(\.1))
    }

    @Test func fileLayoutIsLlamaCpps() throws {
        let ad = try Self.trained()
        let bytes = try AdapterFile.bytes(ad)
        try bytes.withUnsafeBytes { raw in
            let f = try GGUFFile(bytes: raw)
            #expect(f["general.architecture"] == .string("llama"))
            #expect(f["general.type"] == .string("adapter"))
            #expect(f["adapter.type"] == .string("lora"))
            #expect(f["adapter.lora.alpha"] == .float32(16))     // f32: llama.cpp asserts the type
            #expect(f["prge.rank"] == .uint32(8) && f["prge.seed"] == .uint64(77) && f["prge.rng_version"] == .uint32(rngVersion))
            #expect(f["prge.targets"] == .array(.string, [.string("q"), .string("v"), .string("down")]))
            #expect(f["prge.layers"] == .array(.int32, [.int32(0), .int32(7), .int32(29)]))
            #expect(f["prge.a_scale"] == .array(.float32, [.float32(1), .float32(0.5), .float32(1)]))   // per prge.targets
            let a = try #require(f.tensor("blk.7.ffn_down.weight.lora_a"))
            let b = try #require(f.tensor("blk.7.ffn_down.weight.lora_b"))
            #expect(a.dims == [1536, 8] && a.type == .f32)     // ne [n_in, r]
            #expect(b.dims == [8, 576] && b.type == .f32)      // ne [r, n_out]
            #expect(try f.dequantize(b) == ad.slot(layer: 7, .down)!.b)
            #expect(f.tensors.count == 2 * 9)
        }
    }

    @Test func saveToDiskAndLoadAgainstTheReferenceModel() throws {
        let model = try TestSupport.modelFile()
        let ad = try Self.trained()
        let path = "/tmp/prge-lora-test-\(getpid()).gguf"
        defer { unlink(path) }
        try AdapterFile.save(ad, to: path)
        let back = try AdapterFile.load(path: path, model: model)
        #expect(back.config == ad.config)
        #expect(back.slots.map(\.b) == ad.slots.map(\.b))
    }

    /// A foreign adapter, as llama.cpp's convert_lora_to_gguf.py writes one: no prge keys, A and B
    /// given (here A in F16, B in F32), rank 4, α 8, a norm tensor that loaders skip.
    static func foreign(alpha: Float? = 8, edit: (inout GGUFWriter) throws -> Void = { _ in }) throws -> [UInt8] {
        var w = GGUFWriter()
        w.add("general.architecture", .string("llama"))
        w.add("general.type", .string("adapter"))
        w.add("adapter.type", .string("lora"))
        if let alpha { w.add("adapter.lora.alpha", .float32(alpha)) }
        for (layer, p) in [(0, Projection.q), (3, .down)] {
            let (dIn, dOut) = smolShape(p)
            let base = AdapterFile.tensorName(layer, p)
            try w.addTensor(name: base + ".lora_a", dims: [dIn, 4], type: .f16, data: f16Pattern(4 * dIn))
            try w.addTensor(name: base + ".lora_b", dims: [4, dOut], floats: (0..<(dOut * 4)).map { Float($0 % 7) - 3 })
        }
        try w.addTensor(name: "blk.0.attn_norm.weight", dims: [576], floats: [Float](repeating: 1, count: 576))
        try edit(&w)
        return try w.bytes()
    }

    /// F16 values 0.5, -0.25, 1, 0.5, … (exact in F16).
    static func f16Pattern(_ n: Int) -> [UInt8] {
        let halves: [UInt16] = [0x3800, 0xB400, 0x3C00]
        return (0..<n).flatMap { i -> [UInt8] in let h = halves[i % 3]; return [UInt8(h & 0xff), UInt8(h >> 8)] }
    }

    @Test func foreignAdapterLoads() throws {
        let ad = try Self.reload(try Self.foreign())
        #expect(ad.config.rank == 4 && ad.config.alpha == 8 && ad.scale == 2)
        #expect(ad.config.targets == [.q, .down] && ad.config.layers == [0, 3])
        #expect(ad.slots.map { "\($0.layer)\($0.proj.shortName)" } == ["0q", "3down"], "only the pairs in the file")
        let q = try #require(ad.slot(layer: 0, .q))
        #expect(q.a.prefix(4) == [0.5, -0.25, 1, 0.5])
        #expect(q.b.prefix(8) == [-3, -2, -1, 0, 1, 2, 3, -3])
        #expect(ad.slot(layer: 3, .q) == nil && ad.metadata.isEmpty)
        // Without adapter.lora.alpha llama.cpp uses scale 1: α = rank.
        #expect(try Self.reload(try Self.foreign(alpha: nil)).scale == 1)
        // Saved by prge, it becomes a prge adapter with the same tensors.
        let again = try Self.reload(try AdapterFile.bytes(ad))
        #expect(again.slots.map(\.a) == ad.slots.map(\.a) && again.slots.map(\.b) == ad.slots.map(\.b))
    }

    @Test func badFilesGiveErrors() throws {
        func file(_ meta: [(String, GGUFValue)], _ tensors: [(String, [Int], [Float])]) throws -> [UInt8] {
            var w = GGUFWriter()
            for (k, v) in meta { w.add(k, v) }
            for (n, d, f) in tensors { try w.addTensor(name: n, dims: d, floats: f) }
            return try w.bytes()
        }
        let header: [(String, GGUFValue)] = [("general.architecture", .string("llama")), ("general.type", .string("adapter")),
                                             ("adapter.type", .string("lora")), ("adapter.lora.alpha", .float32(4))]
        let a = ("blk.1.attn_v.weight.lora_a", [576, 2], [Float](repeating: 0.1, count: 1152))
        let b = ("blk.1.attn_v.weight.lora_b", [2, 192], [Float](repeating: 0.2, count: 384))
        #expect(try Self.reload(try file(header, [a, b])).slots.count == 1, "the good file loads")

        Self.expectFormatError(try file(Array(header.dropFirst()), [a, b]), containing: "general.architecture")
        Self.expectFormatError(try file([header[0], header[2]], [a, b]), containing: "general.type")
        Self.expectFormatError(try file([header[0], header[1], ("adapter.type", .string("ia3"))], [a, b]), containing: "adapter.type")
        Self.expectFormatError(try file([("general.architecture", .string("gemma3"))] + header.dropFirst(), [a, b]), containing: "gemma3")
        Self.expectFormatError(try file(header, [a]), containing: "lora_a but no lora_b")
        Self.expectFormatError(try file(header, [b]), containing: "lora_b but no lora_a")
        Self.expectFormatError(try file(header, []), containing: "no lora_a/lora_b")
        Self.expectFormatError(try file(header, [("blk.1.attn_v.weight.lora_a", [2, 576], a.2), b]), containing: "not transposed")
        Self.expectFormatError(try file(header, [("blk.1.attn_v.weight.lora_a", [512, 2], [Float](repeating: 0, count: 1024)), b]),
                               containing: "does not match the model")
        Self.expectFormatError(try file(header, [a, b, ("blk.40.attn_v.weight.lora_a", [576, 2], a.2), ("blk.40.attn_v.weight.lora_b", [2, 192], b.2)]),
                               containing: "layer 40")
        Self.expectFormatError(try file(header, [a, b, ("blk.1.attn_v.weight.lora_c", [4], [1, 2, 3, 4])]), containing: "neither")
        Self.expectFormatError(try file(header, [a, b, ("output.weight.lora_a", [576, 2], a.2)]), .unsupported, containing: "can be adapted")
        Self.expectFormatError(try file(header, [a, b, ("blk.2.attn_q.weight.lora_a", [576, 3], [Float](repeating: 0, count: 1728)),
                                                 ("blk.2.attn_q.weight.lora_b", [3, 576], [Float](repeating: 0, count: 1728))]),
                               .unsupported, containing: "mixed ranks")
        var nan = b
        nan.2[17] = .nan
        Self.expectFormatError(try file(header, [a, nan]), containing: "NaN")
        Self.expectFormatError(try file(header.dropLast() + [("adapter.lora.alpha", .float32(-1))], [a, b]), containing: "alpha")

        // prge keys that disagree with the tensors mean a damaged file.
        let ours = try AdapterFile.bytes(try Self.trained())
        let f = try ours.withUnsafeBytes { try GGUFFile(bytes: $0) }
        func resave(_ key: String, _ value: GGUFValue?) throws -> [UInt8] {
            var w = GGUFWriter()
            for (k, v) in f.metadata where k != key { w.add(k, v) }
            if let value { w.add(key, value) }
            for t in f.tensors { try w.addTensor(name: t.name, dims: t.dims, floats: try f.dequantize(t)) }
            return try w.bytes()
        }
        Self.expectFormatError(try resave("prge.rank", .uint32(16)), containing: "prge.rank")
        Self.expectFormatError(try resave("prge.targets", .array(.string, [.string("q")])), containing: "prge.targets")
        Self.expectFormatError(try resave("prge.layers", nil), containing: "prge.layers")
        Self.expectFormatError(try resave("prge.seed", .string("x")), containing: "prge.seed")
        Self.expectFormatError(try resave("prge.a_scale", .array(.float32, [.float32(1), .float32(0.5)])), containing: "prge.a_scale")
        Self.expectFormatError(try resave("prge.a_scale", .array(.float32, [.float32(1), .float32(0), .float32(1)])), containing: "prge.a_scale")
        // Truncated file: the GGUF reader's error.
        Self.expectFormatError(Array(ours.dropLast(100)), containing: "truncated")
    }

    @Test func metadataKeysAreChecked() throws {
        let ad = try Self.trained()
        for key in ["general.name", "prge.rank", "lr"] {
            ad.metadata = [(key, .uint32(1))]
            #expect(throws: PRGEError.self, "\(key)") { try AdapterFile.bytes(ad) }
        }
    }
}
