// Adapters on disk: a GGUF file in llama.cpp's LoRA adapter layout, so llama.cpp loads what prge
// trains and prge loads what llama.cpp's converter (or PEFT via it) makes.
//
//   general.architecture  string  the base model's ("llama")
//   general.type          string  "adapter"
//   adapter.type          string  "lora"
//   adapter.lora.alpha    f32     α (llama.cpp scales by α / rank, rank = lora_b.ne[0])
//   blk.<L>.<proj>.weight.lora_a  F32, ne [d_in, r]   = row-major [r][d_in]   = LoRASlot.a
//   blk.<L>.<proj>.weight.lora_b  F32, ne [r, d_out]  = row-major [d_out][r]  = LoRASlot.b
//
// prge's own keys (llama.cpp keeps scalars as metadata and skips arrays, so they are harmless):
//   prge.rank u32, prge.seed u64, prge.targets [string] (short names), prge.layers [i32]
//   (absent = all layers), prge.a_scale [f32] (one per prge.targets entry; absent = all 1: the
//   init scale of A, a record only, since A is read from the file), prge.rng_version u32, then
//   `LoRAAdapter.metadata` (step, η, ε, …).
// A file without prge.rank is foreign: rank comes from the tensor shapes, α from
// adapter.lora.alpha (absent or 0: α = rank, i.e. scale 1, which is what llama.cpp does then), and
// A and B both from the file. A foreign adapter may adapt any set of (layer, projection) pairs,
// not a full targets × layers grid; prge.targets / prge.layers then list the union, and the
// slots are exactly the pairs in the file. A always comes from the file, also for prge's own adapters: it is
// what the adapter computes, whatever generator version made it.

public enum AdapterFile {
    // Keys written and interpreted here; `LoRAAdapter.metadata` may not use them.
    static let rankKey = "prge.rank", seedKey = "prge.seed", targetsKey = "prge.targets"
    static let layersKey = "prge.layers", rngKey = "prge.rng_version", aScaleKey = "prge.a_scale"
    static let reserved: Set<String> = [rankKey, seedKey, targetsKey, layersKey, rngKey, aScaleKey]

    /// Writes `adapter` atomically to `path`.
    public static func save(_ adapter: LoRAAdapter, to path: String, architecture: String = "llama") throws {
        try writer(adapter, architecture: architecture).write(to: path)
    }

    /// The file's bytes.
    public static func bytes(_ adapter: LoRAAdapter, architecture: String = "llama") throws -> [UInt8] {
        try writer(adapter, architecture: architecture).bytes()
    }

    /// Loads an adapter for `model`, checking every tensor against the model's weight of the same
    /// name (it must exist and have matching d_in and d_out).
    public static func load(path: String, model: GGUFFile) throws -> LoRAAdapter {
        let arch = try model.string("general.architecture")
        let nLayer = try model.int(arch + ".block_count")
        return try load(try GGUFFile(path: path), architecture: arch, nLayer: nLayer) { layer, p in
            guard let w = model.tensor(tensorName(layer, p)), w.dims.count == 2 else { return nil }
            return (w.dims[0], w.dims[1])
        }
    }

    /// Loads an adapter for a model of `architecture` with `nLayer` blocks whose projection `p`
    /// has shape `shape(p)` in every layer.
    public static func load(path: String, architecture: String, nLayer: Int,
                            shape: (Projection) -> (dIn: Int, dOut: Int)) throws -> LoRAAdapter {
        try load(try GGUFFile(path: path), architecture: architecture, nLayer: nLayer) { _, p in shape(p) }
    }

    /// `blk.<L>.<proj>.weight`, the base tensor an adapter slot belongs to.
    public static func tensorName(_ layer: Int, _ p: Projection) -> String { "blk.\(layer).\(p.ggufName).weight" }

    // ---- writing ---------------------------------------------------------------------------

    static func writer(_ ad: LoRAAdapter, architecture: String) throws -> GGUFWriter {
        var w = GGUFWriter()
        w.add("general.architecture", .string(architecture))
        w.add("general.type", .string("adapter"))
        w.add("adapter.type", .string("lora"))
        w.add("adapter.lora.alpha", .float32(ad.config.alpha))
        w.add(rankKey, .uint32(UInt32(ad.config.rank)))
        w.add(seedKey, .uint64(ad.config.seed))
        w.add(targetsKey, .array(.string, ad.config.targets.map { .string($0.shortName) }))
        if let layers = ad.config.layers { w.add(layersKey, .array(.int32, layers.map { .int32(Int32($0)) })) }
        if !ad.config.aScale.isEmpty {
            w.add(aScaleKey, .array(.float32, ad.config.targets.map { .float32(ad.config.aScale[$0] ?? 1) }))
        }
        w.add(rngKey, .uint32(rngVersion))
        for (key, value) in ad.metadata {
            guard key.hasPrefix("prge."), !reserved.contains(key) else {
                throw PRGEError.invalid("adapter metadata key '\(key)' must start with 'prge.' and not be one of \(reserved.sorted())")
            }
            w.add(key, value)
        }
        for s in ad.slots {
            let base = tensorName(s.layer, s.proj)
            try w.addTensor(name: base + ".lora_a", dims: [s.dIn, s.rank], floats: s.a)
            try w.addTensor(name: base + ".lora_b", dims: [s.rank, s.dOut], floats: s.b)
        }
        return w
    }

    // ---- reading ---------------------------------------------------------------------------

    /// Loads from an open GGUF file. `baseShape(layer, p)` is the (d_in, d_out) of the model's
    /// weight, or nil when the model has no such weight.
    public static func load(_ f: GGUFFile, architecture: String, nLayer: Int,
                     baseShape: (Int, Projection) -> (dIn: Int, dOut: Int)?) throws -> LoRAAdapter {
        let file = f.path
        func fail(_ m: String) -> PRGEError { PRGEError.format("\(file): \(m)") }
        guard (1...4096).contains(nLayer) else { throw PRGEError.invalid("model has \(nLayer) layers") }
        guard f["general.type"]?.string == "adapter" else { throw fail("not an adapter (general.type is not \"adapter\")") }
        guard f["adapter.type"]?.string == "lora" else { throw fail("not a LoRA adapter (adapter.type is not \"lora\")") }
        let arch = try f.string("general.architecture")
        guard arch == architecture else { throw fail("adapter is for architecture '\(arch)', the model is '\(architecture)'") }
        // An activated LoRA (convert_lora_to_gguf writes this key from a PEFT aLoRA config):
        // llama.cpp applies it only after the invocation tokens, prge would apply it everywhere.
        guard f["adapter.alora.invocation_tokens"] == nil else {
            throw PRGEError.unsupported("\(file): activated LoRA (adapter.alora.invocation_tokens) is not supported")
        }

        let pairs = try tensorPairs(f, nLayer: nLayer, fail)
        guard !pairs.isEmpty else { throw fail("no lora_a/lora_b tensors") }
        var slots: [LoRASlot] = []
        var rank = 0
        for (key, pair) in pairs.sorted(by: { $0.key < $1.key }) {
            let (layer, p) = (key / 7, Projection(rawValue: key % 7)!)
            let name = tensorName(layer, p)
            guard let a = pair.a, let b = pair.b else {
                throw fail("\(name) has \(pair.a == nil ? "lora_b but no lora_a" : "lora_a but no lora_b")")
            }
            guard a.dims.count == 2, b.dims.count == 2 else {
                throw fail("\(name): lora_a dims \(a.dims) and lora_b dims \(b.dims) must be 2-D")
            }
            guard let (dIn, dOut) = baseShape(layer, p) else { throw fail("\(name): the model has no such weight (wrong base model?)") }
            let r = b.dims[0]
            guard a.dims[1] == r else { throw fail("\(name): lora_a ne \(a.dims) and lora_b ne \(b.dims) disagree on the rank (lora_a not transposed?)") }
            guard a.dims[0] == dIn, b.dims[1] == dOut else {
                throw fail("\(name): adapter shape d_in \(a.dims[0]), d_out \(b.dims[1]) does not match the model's \(dIn), \(dOut)")
            }
            guard (1...LoRAConfig.maxRank).contains(r) else { throw fail("\(name): rank \(r) out of range 1...\(LoRAConfig.maxRank)") }
            guard rank == 0 || r == rank else { throw PRGEError.unsupported("\(file): mixed ranks (\(rank) and \(r) at \(name)) are not supported") }
            rank = r
            slots.append(LoRASlot(layer: layer, proj: p, dIn: dIn, dOut: dOut, rank: r, index: slots.count,
                                  a: try floats(f, a, fail), b: try floats(f, b, fail)))
        }
        let (config, extra) = try configuration(f, slots: slots, rank: rank, nLayer: nLayer, fail)
        let adapter = try LoRAAdapter(config: config, nLayer: nLayer, slots: slots)
        adapter.metadata = extra
        return adapter
    }

    /// The lora_a / lora_b tensors by slot key (layer · 7 + projection). Rejects every other
    /// tensor except `*_norm.weight`, which llama.cpp also skips.
    private static func tensorPairs(_ f: GGUFFile, nLayer: Int, _ fail: (String) -> PRGEError) throws
        -> [Int: (a: GGUFTensorInfo?, b: GGUFTensorInfo?)] {
        var pairs: [Int: (a: GGUFTensorInfo?, b: GGUFTensorInfo?)] = [:]
        for t in f.tensors {
            if t.name.hasSuffix("_norm.weight") { continue }
            let isA = t.name.hasSuffix(".lora_a")
            guard isA || t.name.hasSuffix(".lora_b") else { throw fail("tensor '\(t.name)' is neither a .lora_a nor a .lora_b") }
            let base = String(t.name.dropLast(".lora_a".count))
            guard let (layer, p) = parseBase(base) else {
                throw PRGEError.unsupported("\(f.path): tensor '\(t.name)': only blk.<L>.{attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down}.weight can be adapted")
            }
            guard layer < nLayer else { throw fail("tensor '\(t.name)': layer \(layer) but the model has \(nLayer)") }
            let key = layer * 7 + p.rawValue
            if isA { pairs[key, default: (nil, nil)].a = t } else { pairs[key, default: (nil, nil)].b = t }
        }
        return pairs
    }

    /// "blk.<L>.<proj>.weight" → (L, proj).
    private static func parseBase(_ base: String) -> (Int, Projection)? {
        let parts = base.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "blk", parts[3] == "weight", let layer = Int(parts[1]), layer >= 0,
              String(layer) == parts[1], let p = Projection(name: String(parts[2])), p.ggufName == parts[2] else { return nil }
        return (layer, p)
    }

    /// A tensor's values as f32: F32 copied bit for bit, other types dequantized. Non-finite
    /// values are refused: one NaN in B would silently poison every output.
    private static func floats(_ f: GGUFFile, _ t: GGUFTensorInfo, _ fail: (String) -> PRGEError) throws -> [Float] {
        let v: [Float]
        if t.type == .f32 {
            let raw = f.data(t)
            v = (0..<t.elementCount).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
        } else {
            v = try f.dequantize(t)
        }
        guard v.allSatisfy(\.isFinite) else { throw fail("tensor '\(t.name)' holds NaN or infinite values") }
        return v
    }

    /// The config the file describes, and its remaining `prge.*` keys.
    private static func configuration(_ f: GGUFFile, slots: [LoRASlot], rank: Int, nLayer: Int,
                                      _ fail: (String) -> PRGEError) throws -> (LoRAConfig, [(String, GGUFValue)]) {
        var c = LoRAConfig()
        c.rank = rank
        // llama.cpp's rule: α = 0 (or absent) means scale 1, which is α = rank here.
        if let v = f["adapter.lora.alpha"], v.double != 0 {
            guard let a = v.double, Float(a).isFinite, a > 0 else { throw fail("adapter.lora.alpha \(v) must be a number ≥ 0") }
            c.alpha = Float(a)
        } else {
            c.alpha = Float(rank)
        }
        let targets = Projection.allCases.filter { p in slots.contains { $0.proj == p } }
        let layers = Array(Set(slots.map(\.layer))).sorted()
        c.targets = targets
        c.layers = layers.count == nLayer ? nil : layers
        guard f[rankKey] != nil else { return (c, []) }     // foreign adapter

        guard f[rankKey]?.int == rank else { throw fail("\(rankKey) \(f[rankKey]!) does not match the tensors' rank \(rank)") }
        guard case .uint64(let seed)? = f[seedKey] else { throw fail("\(seedKey) missing or not a u64") }
        c.seed = seed
        guard let names = f[targetsKey]?.array?.map({ $0.string.flatMap(Projection.init(name:)) }), !names.contains(nil),
              names.map({ $0! }) == targets else {
            throw fail("\(targetsKey) does not list the adapted projections \(targets.map(\.shortName))")
        }
        if let v = f[layersKey] {
            guard let ls = v.array?.map(\.int), ls.map({ $0 ?? -1 }) == layers else {
                throw fail("\(layersKey) does not list the adapted layers \(layers)")
            }
        } else {
            guard c.layers == nil else { throw fail("no \(layersKey), yet only layers \(layers) are adapted") }
        }
        if let v = f[aScaleKey] {
            let scales = (v.array ?? []).compactMap { $0.double.map(Float.init) }
            guard v.array?.count == targets.count, scales.count == targets.count,
                  scales.allSatisfy({ $0.isFinite && $0 > 0 }) else {
                throw fail("\(aScaleKey) must hold one finite number > 0 per target \(targets.map(\.shortName))")
            }
            c.aScale = Dictionary(uniqueKeysWithValues: zip(targets, scales).filter { $0.1 != 1 })
        }
        let extra = f.metadata.filter { $0.key.hasPrefix("prge.") && !reserved.contains($0.key) }.map { ($0.key, $0.value) }
        return (c, extra)
    }
}
