import Testing
import PRGE
#if canImport(Glibc)
import Glibc
#endif

/// LoRA adapters travel between prge and llama.cpp, both ways, on the reference model.
///
/// Every run compares prge against llama.cpp's logits recorded in Tests/Fixtures/adapters
/// (scripts/fixtures/make_adapter_fixtures.py, llama-cpp-python 0.3.36):
///   prge_qk, prge_all        made by prge's API (random nonzero B), saved with AdapterFile, loaded by llama.cpp
///   convert_f32, convert_f16 what llama.cpp's convert_lora_to_gguf.py makes of a PEFT adapter, loaded by prge
/// on two llama.cpp paths: the model's own Q4_1 weights (llama.cpp quantizes activations to 8 bits
/// there) and an F32 copy of the model (exact f32 products, the arithmetic of prge's fp32 mode).
/// PRGE_INTEROP=1 also reruns llama.cpp live on the full vocabulary (needs python3 with
/// llama-cpp-python, gguf and numpy; Tests/interop/llamacpp_logits.py).
@Suite(.serialized) struct AdapterInteropTests {
    static var dir: String { TestSupport.fixtures + "/adapters" }
    static let prgeNames = ["prge_qk", "prge_all"]
    static let convertedNames = ["convert_f32", "convert_f16"]

    // ---- tolerances (docs/ADAPTERS.md has the measurements and the commands) ------------------
    //
    // f32 path: llama.cpp on the F32 copy and prge's fp32 forward on the Q4_1 file multiply the
    // same f32 weights (prge dequantizes Q4_1 rows exactly as gguf does) by f32 activations, and
    // both apply LoRA as two separate f32 products, s·B·(A·x). What remains is f32 rounding in a
    // different order (SIMD sums, exp, RoPE angles: prge Double, llama.cpp f32) through 30
    // layers: measured max |Δlogit| 4–7e-5 (full vocabulary, logits up to ~25). 1e-3 leaves 15×
    // room for other CPUs' kernels (AVX2 / AVX-512 / generic sum in other orders) and is still
    // ~10⁴ times smaller than what each adapter changes (checked below).
    // convert_f16 alone: llama.cpp's CPU product with an F16 weight rounds its input to f16
    // first (ggml's vec_dot type for F16), so x → f16 before lora_a and A·x → f16 before lora_b:
    // 2⁻¹¹ relative on the LoRA term only, which moves these logits by up to ~11, so ≈ 5e-3 at
    // worst; measured 3.3e-3. prge widens F16 exactly and multiplies in f32.
    static let tolF32: Float = 1e-3
    static let tolF32HalfLoRA: Float = 1e-2
    // Q4_1 path: llama.cpp rounds the input of every Q4_1 / Q8_0 product to Q8_1 (8-bit blocks
    // of 32), prge does not. prge differs from it exactly as much as llama.cpp's own F32 copy
    // does (checked: the two gaps' RMS agree to 1%), i.e. the whole difference is llama.cpp's
    // activation quantization: base model max 0.91 / RMS 0.26 (full vocabulary); adapted models
    // up to 2.93 / 0.57 (prge_qk's large q/k update sharpens attention, and the quantization
    // noise with it). Bounds: max 4, RMS 0.75. Loose per logit, but an adapter ignored or applied
    // in the wrong q/k row order moves the logits by RMS 1.9–2.8 and fails the RMS bound.
    static let tolQ41Max: Float = 4
    static let tolQ41RMS: Float = 0.75

    static func tolerance(_ adapter: String, path: String) -> Float {
        path == "f32" ? (adapter == "convert_f16" ? tolF32HalfLoRA : tolF32) : tolQ41Max
    }

    // ---- the prge-made adapters ----------------------------------------------------------------

    /// SmolLM2-135M: d_model 576, 9 heads / 3 KV heads of 64, FFN 1536, 30 layers.
    static func smolShape(_ p: Projection) -> (dIn: Int, dOut: Int) {
        switch p {
        case .q, .o: return (576, 576)
        case .k, .v: return (576, 192)
        case .gate, .up: return (576, 1536)
        case .down: return (1536, 576)
        }
    }

    /// The prge fixture adapters, made with the public API only: a fresh adapter (A from the
    /// seed), then B = σ·z from one `applyUpdate` (B − lr·g·z with g = −1), as if trained.
    static func prgeAdapter(_ name: String) throws -> LoRAAdapter {
        var c = LoRAConfig()
        let sigma: Float
        switch name {
        case "prge_qk":   // q/k only: B rows of attn_q / attn_k are in the GGUF (permuted) order
            c.rank = 4; c.alpha = 8; c.targets = [.q, .k]; c.layers = [0, 11, 29]; c.seed = 11; sigma = 2
        case "prge_all":
            c.rank = 2; c.alpha = 4; c.targets = Projection.allCases; c.layers = [5, 24]; c.seed = 12; sigma = 1
        default:
            throw PRGEError.invalid("no prge fixture adapter '\(name)'")
        }
        let ad = try LoRAAdapter(config: c, nLayer: 30, shape: smolShape)
        applyUpdate(StepRecord(seed: c.seed &+ 1000, step: 0, lr: sigma, eps: 1, g: [-1]), to: ad)
        ad.metadata = [("prge.step", .uint64(1)), ("prge.note", .string("interop fixture"))]
        return ad
    }

    /// Not a check: with PRGE_WRITE_ADAPTER_FIXTURES=DIR it writes the prge adapters to DIR
    /// (make_adapter_fixtures.py runs it).
    @Test func writePrgeAdapterFixtures() throws {
        guard let d = getenv("PRGE_WRITE_ADAPTER_FIXTURES") else { return }
        for n in Self.prgeNames { try AdapterFile.save(try Self.prgeAdapter(n), to: String(cString: d) + "/\(n).gguf") }
    }

    // ---- shared state --------------------------------------------------------------------------

    nonisolated(unsafe) static var _model: Model?
    nonisolated(unsafe) static var _context: Context?
    static func context() throws -> Context {
        if let c = _context { return c }
        let m = try Model(path: TestSupport.modelPath)
        let c = try Context(model: m, threads: 2, mode: .fp32)
        _model = m
        _context = c
        return c
    }

    /// llama.cpp's recorded logits: token ids of the prompts, vocabulary subset, and per
    /// (path, adapter) one [tokens, ids] block per prompt, prompt after prompt.
    struct Reference {
        let prompts: [[Int32]]
        let ids: [Int32]
        let file: GGUFFile
        init() throws {
            let f = try GGUFFile(path: AdapterInteropTests.dir + "/llamacpp_logits.gguf")
            func ints(_ key: String) throws -> [Int32] {
                guard let a = f[key]?.array?.compactMap(\.int), !a.isEmpty else { throw PRGEError.format("fixture lacks \(key)") }
                return a.map { Int32($0) }
            }
            var p: [[Int32]] = []
            while f["interop.prompt.\(p.count)"] != nil { p.append(try ints("interop.prompt.\(p.count)")) }
            ids = try ints("interop.ids")
            prompts = p
            file = f
        }
        func logits(path: String, adapter: String) throws -> [Float] {
            var out: [Float] = []
            for i in prompts.indices {
                guard let t = file.tensor("\(path).\(adapter).\(i)"), t.type == .f32,
                      t.dims == [ids.count, prompts[i].count] else { throw PRGEError.format("fixture tensor \(path).\(adapter).\(i) missing or mis-shaped") }
                out += AdapterInteropTests.floats(file.data(t), count: t.elementCount)
            }
            return out
        }
        /// Every position of every prompt.
        var batch: Batch {
            Batch(sequences: prompts, outputs: prompts.enumerated().flatMap { s, p in p.indices.map { (s, $0) } })
        }
    }

    static func floats(_ raw: UnsafeRawBufferPointer, count: Int) -> [Float] {
        (0..<count).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
    }

    /// max |a − b| and RMS(a − b).
    static func diff(_ a: [Float], _ b: [Float]) -> (max: Float, rms: Float) {
        precondition(a.count == b.count)
        var m: Float = 0, s = 0.0
        for i in a.indices {
            let d = abs(a[i] - b[i])
            m = max(m, d.isNaN ? .infinity : d)
            s += Double(d) * Double(d)
        }
        return (m, Float((s / Double(max(a.count, 1))).squareRoot()))
    }

    static func adapterPath(_ name: String) -> String { dir + "/\(name).gguf" }

    static func load(_ name: String) throws -> LoRAAdapter {
        try AdapterFile.load(path: adapterPath(name), model: try context().model.gguf)
    }

    // ---- format: what llama.cpp was given ------------------------------------------------------

    /// The committed prge adapters are exactly what the API makes today (so llama.cpp's recorded
    /// logits belong to them), and carry the keys and layout llama.cpp's loader checks.
    @Test(arguments: prgeNames) func prgeFixtureIsTheAPIsAdapter(_ name: String) throws {
        let want = try Self.prgeAdapter(name)
        let got = try AdapterFile.load(path: Self.adapterPath(name), model: try TestSupport.modelFile())
        #expect(got.config == want.config)
        #expect(got.slots.count == want.slots.count)
        for (g, w) in zip(got.slots, want.slots) {
            #expect(g.layer == w.layer && g.proj == w.proj)
            #expect(g.a == w.a, "A of blk.\(w.layer).\(w.proj.ggufName)")
            #expect(g.b == w.b, "B of blk.\(w.layer).\(w.proj.ggufName)")
            #expect(w.b.contains { $0 != 0 })
        }
        let f = try GGUFFile(path: Self.adapterPath(name))
        #expect(f["general.architecture"] == .string("llama"))
        #expect(f["general.type"] == .string("adapter"))
        #expect(f["adapter.type"] == .string("lora"))
        #expect(f["adapter.lora.alpha"] == .float32(want.config.alpha))
        for s in want.slots {
            let base = AdapterFile.tensorName(s.layer, s.proj)
            let a = f.tensor(base + ".lora_a"), b = f.tensor(base + ".lora_b")
            #expect(a?.type == .f32 && a?.dims == [s.dIn, s.rank], "\(base).lora_a: ne [d_in, r]")
            #expect(b?.type == .f32 && b?.dims == [s.rank, s.dOut], "\(base).lora_b: ne [r, d_out]")
        }
        #expect(f.tensors.count == 2 * want.slots.count)
        #expect(f.tensors.allSatisfy { $0.name.utf8.count < 64 })
    }

    /// What prge makes of convert_lora_to_gguf's files: α from adapter.lora.alpha, rank from the
    /// shapes, exactly the (layer, projection) pairs present, A and B as written (F16 widened).
    @Test(arguments: convertedNames) func convertedAdapterImport(_ name: String) throws {
        let ad = try AdapterFile.load(path: Self.adapterPath(name), model: try TestSupport.modelFile())
        #expect(ad.config.rank == 4 && ad.config.alpha == 16 && ad.scale == 4)
        #expect(ad.slots.map { "\($0.layer).\($0.proj.shortName)" } == ["2.q", "2.k", "2.v", "2.o", "17.q", "17.k", "17.up", "17.down"])
        #expect(ad.config.targets == [.q, .k, .v, .o, .up, .down] && ad.config.layers == [2, 17])
        #expect(ad.metadata.isEmpty)
        let f = try GGUFFile(path: Self.adapterPath(name))
        for s in ad.slots {
            let t = f.tensor(AdapterFile.tensorName(s.layer, s.proj) + ".lora_a")!
            #expect(t.type == (name == "convert_f16" ? .f16 : .f32))
            if t.type == .f32 { #expect(s.a == Self.floats(f.data(t), count: t.elementCount)) }
        }
    }

    /// llama.cpp's reading of two keys a converted file may carry: adapter.lora.alpha = 0 means
    /// scale 1 (llama_adapter_lora_weight::get_scale), and adapter.alora.invocation_tokens makes
    /// an activated LoRA, which llama.cpp applies only after those tokens: prge refuses it rather
    /// than compute something else.
    @Test func convertedKeysReadLikeLlamaCpp() throws {
        func file(_ extra: [(String, GGUFValue)]) throws -> [UInt8] {
            var w = GGUFWriter()
            w.add("general.architecture", .string("llama"))
            w.add("general.type", .string("adapter"))
            w.add("adapter.type", .string("lora"))
            for (k, v) in extra { w.add(k, v) }
            try w.addTensor(name: "blk.3.attn_v.weight.lora_a", dims: [576, 2], floats: [Float](repeating: 0.01, count: 1152))
            try w.addTensor(name: "blk.3.attn_v.weight.lora_b", dims: [2, 192], floats: [Float](repeating: 0.02, count: 384))
            return try w.bytes()
        }
        func load(_ bytes: [UInt8]) throws -> LoRAAdapter {
            try bytes.withUnsafeBytes { raw in
                try AdapterFile.load(try GGUFFile(bytes: raw, name: "converted.gguf"), architecture: "llama", nLayer: 30) { _, p in Self.smolShape(p) }
            }
        }
        #expect(try load(file([("adapter.lora.alpha", .float32(0))])).scale == 1)
        #expect(try load(file([])).scale == 1)
        #expect(try load(file([("adapter.lora.alpha", .float32(6))])).scale == 3)
        do {
            _ = try load(file([("adapter.lora.alpha", .float32(4)),
                               ("adapter.alora.invocation_tokens", .array(.uint32, [.uint32(5), .uint32(9)]))]))
            Issue.record("loaded an activated LoRA")
        } catch let e as PRGEError {
            #expect(e.code == .unsupported && e.message.contains("adapter.alora.invocation_tokens"), "\(e)")
        }
    }

    // ---- numbers: prge against llama.cpp -------------------------------------------------------

    /// prge's logits against llama.cpp's for the same model + adapter on both llama.cpp paths,
    /// and the adapter's own effect far above the tolerance (the comparison can see it).
    @Test(arguments: ["base"] + prgeNames + convertedNames) func logitsMatchLlamaCpp(_ name: String) throws {
        let ref = try Reference()
        let ctx = try Self.context()
        let plan = try name == "base" ? nil : LoRAPlan(adapter: Self.load(name))
        let prge = try ctx.logits(ref.batch, lora: plan, ids: ref.ids)
        let f32 = try ref.logits(path: "f32", adapter: name), q41 = try ref.logits(path: "q4_1", adapter: name)
        let d32 = Self.diff(prge, f32), dq = Self.diff(prge, q41)
        let tol = Self.tolerance(name, path: "f32")
        #expect(d32.max <= tol, "\(name) f32 path: max |Δ| \(d32.max), RMS \(d32.rms)")
        #expect(dq.max <= Self.tolQ41Max && dq.rms <= Self.tolQ41RMS, "\(name) Q4_1 path: max |Δ| \(dq.max), RMS \(dq.rms)")
        // The Q4_1 gap is llama.cpp's own: its F32 copy is as far from its Q4_1 path as prge is.
        let own = Self.diff(f32, q41)
        #expect(abs(dq.rms - own.rms) <= 0.01 * own.rms, "\(name): prge's Q4_1-path RMS \(dq.rms), llama.cpp's own f32/Q4_1 gap \(own.rms)")
        var line = "[interop] \(name): prge vs llama.cpp, f32 path max |Δ| \(d32.max) RMS \(d32.rms); Q4_1 path max |Δ| \(dq.max) RMS \(dq.rms) (llama.cpp f32 vs Q4_1: \(own.max), \(own.rms))"
        if name != "base" {
            let effect = Self.diff(f32, try ref.logits(path: "f32", adapter: "base"))
            #expect(effect.max >= 500 * tol && effect.rms >= 2 * Self.tolQ41RMS,
                    "\(name) changes llama.cpp's logits by max \(effect.max), RMS \(effect.rms): too little to test")
            line += "; adapter effect max \(effect.max) RMS \(effect.rms)"
        }
        print(line)
    }

    /// The q/k row order is llama.cpp's: prge_qk's B rows (and convert_*'s, which the converter
    /// permuted) are in the GGUF order. Un-permuting them — reading them as Hugging Face order,
    /// the classic mistake — breaks the agreement by far more than the tolerance.
    @Test func qkRowOrderIsGGUFs() throws {
        let ref = try Reference()
        let ctx = try Self.context()
        let ad = try Self.load("prge_qk")
        for s in ad.slots { s.b = Self.unpermute(s.b, rows: s.dOut, rank: s.rank, nHead: s.proj == .q ? 9 : 3) }
        let wrong = try ctx.logits(ref.batch, lora: LoRAPlan(adapter: ad), ids: ref.ids)
        let d = Self.diff(wrong, try ref.logits(path: "f32", adapter: "prge_qk"))
        #expect(d.max > 1000 * Self.tolF32 && d.rms > 2 * Self.tolQ41RMS, "HF-order B still agrees: max \(d.max), RMS \(d.rms)")
        print("[interop] prge_qk with B rows in Hugging Face order: max |Δ| \(d.max), RMS \(d.rms) from llama.cpp")
    }

    /// The inverse of convert_hf_to_gguf's LlamaModel.permute on the rows of B [rows, rank]:
    /// GGUF row h·hd + 2i + j (j = 0, 1 an adjacent RoPE pair) holds HF row h·hd + j·hd/2 + i.
    static func unpermute(_ b: [Float], rows: Int, rank: Int, nHead: Int) -> [Float] {
        let hd = rows / nHead
        var out = b
        for h in 0..<nHead {
            for i in 0..<(hd / 2) {
                for j in 0..<2 {
                    let g = h * hd + 2 * i + j, hf = h * hd + j * hd / 2 + i
                    for c in 0..<rank { out[hf * rank + c] = b[g * rank + c] }
                }
            }
        }
        return out
    }

    // ---- training from an imported adapter -----------------------------------------------------

    /// An imported adapter is a starting point for P-RGE: one ZOStepper step moves B and only B
    /// (A and α are the file's, bit for bit), and the trained adapter saves and reloads.
    @Test(arguments: convertedNames) func importedAdapterTrainsBOnly(_ name: String) throws {
        let ctx = try Self.context()
        let ad = try Self.load(name)
        let a0 = ad.slots.map(\.a), b0 = ad.slots.map(\.b)
        let objective = try Objective(task: .promptResponse, loss: .full, tokenizer: ctx.model.tokenizer)
        let samples = [Sample(tokens: [504, 3575, 282, 4649, 314, 7042], target: .response(start: 5))]
        let stepper = try ZOStepper(context: ctx, adapter: ad, objective: objective, estimator: .prge, q: 2, eps: 1e-2, seed: 3)
        let r = try stepper.step(samples, step: 0, lr: 1e-2)
        #expect(r.record.g.allSatisfy { $0.isFinite && $0 != 0 })
        #expect(ad.slots.map(\.a) == a0, "A must not move")
        for (s, b) in zip(ad.slots, b0) { #expect(s.b != b, "B of blk.\(s.layer).\(s.proj.ggufName) did not move") }
        #expect(ad.config.alpha == 16 && ad.config.rank == 4)

        let bytes = try AdapterFile.bytes(ad)
        let back = try bytes.withUnsafeBytes { raw in
            try AdapterFile.load(try GGUFFile(bytes: raw, name: "trained.gguf"), architecture: "llama", nLayer: 30) { _, p in Self.smolShape(p) }
        }
        #expect(back.slots.map(\.a) == a0 && back.slots.map(\.b) == ad.slots.map(\.b) && back.config == ad.config)
    }

    // ---- live llama.cpp (PRGE_INTEROP=1) -------------------------------------------------------

    /// Reruns llama.cpp through llama-cpp-python on adapters written now (the prge ones fresh from
    /// the API, the converted fixtures) and compares the full vocabulary at every position.
    @Test(.enabled(if: getenv("PRGE_INTEROP").map { String(cString: $0) == "1" } ?? false))
    func liveLlamaCpp() throws {
        let ref = try Reference()
        let ctx = try Self.context()
        var template = Array("/tmp/prge-interop-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw PRGEError.io("mkdtemp failed") }
        let tmp = String(cString: p)
        defer {
            for n in Self.prgeNames { unlink(tmp + "/\(n).gguf") }
            unlink(tmp + "/logits.gguf"); unlink(tmp + "/log"); rmdir(tmp)
        }
        var adapters: [(String, String)] = []
        for n in Self.prgeNames {
            try AdapterFile.save(try Self.prgeAdapter(n), to: tmp + "/\(n).gguf")
            adapters.append((n, tmp + "/\(n).gguf"))
        }
        for n in Self.convertedNames { adapters.append((n, Self.adapterPath(n))) }
        let python = getenv("PYTHON").map { String(cString: $0) } ?? "python3"
        var cmd = "\(python) '\(TestSupport.repoRoot)/Tests/interop/llamacpp_logits.py' '\(tmp)/logits.gguf' --model '\(TestSupport.modelPath)'"
        for pr in ref.prompts { cmd += " --tokens " + pr.map(String.init).joined(separator: ",") }
        for (n, path) in adapters { cmd += " --adapter '\(n)=\(path)'" }
        let status = system(cmd + " > '\(tmp)/log' 2>&1")
        #expect(status == 0, "llamacpp_logits.py failed (see its output: rerun `\(cmd)`)")
        guard status == 0 else { return }

        let out = try GGUFFile(path: tmp + "/logits.gguf")
        let nVocab = ctx.model.config.nVocab
        for name in ["base"] + adapters.map(\.0) {
            let plan = try name == "base" ? nil : LoRAPlan(adapter: AdapterFile.load(path: adapters.first { $0.0 == name }!.1, model: ctx.model.gguf))
            let prge = try ctx.logits(ref.batch, lora: plan)
            for path in ["f32", "q4_1"] {
                var cpp: [Float] = []
                for i in ref.prompts.indices {
                    let t = try #require(out.tensor("\(path).\(name).\(i)"))
                    #expect(t.dims == [nVocab, ref.prompts[i].count])
                    cpp += Self.floats(out.data(t), count: t.elementCount)
                }
                let d = Self.diff(prge, cpp)
                print("[interop live] \(name) \(path): max |Δlogit| \(d.max), RMS \(d.rms) over \(cpp.count) logits")
                if path == "f32" {
                    #expect(d.max <= Self.tolerance(name, path: path), "\(name) f32: max \(d.max)")
                } else {
                    #expect(d.max <= Self.tolQ41Max && d.rms <= Self.tolQ41RMS, "\(name) q4_1: max \(d.max), RMS \(d.rms)")
                }
            }
        }
    }
}
