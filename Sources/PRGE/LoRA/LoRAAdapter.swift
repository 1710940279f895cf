// LoRA-FA adapters. For each adapted projection W [d_out, d_in] of a Llama block:
//
//   y = W x + (α/r) · B (A x),   A [r, d_in] frozen random,  B [d_out, r] trained, zero at start
//
// Only B moves during P-RGE; A is a fixed random projection (Kaiming-uniform from the seed).
// The scale rule α/r is llama.cpp's, so an adapter behaves the same in both engines.

/// The seven linear layers of a Llama block, in the order slots are laid out.
public enum Projection: Int, CaseIterable, Sendable {
    case q, k, v, o, gate, up, down

    /// The base tensor's name inside a block: `blk.<L>.<ggufName>.weight`.
    public var ggufName: String {
        switch self {
        case .q: return "attn_q"
        case .k: return "attn_k"
        case .v: return "attn_v"
        case .o: return "attn_output"
        case .gate: return "ffn_gate"
        case .up: return "ffn_up"
        case .down: return "ffn_down"
        }
    }

    /// The short name used in configs and in `prge.targets`.
    public var shortName: String { String(describing: self) }

    /// Accepts the short names ("q", …, "down") and the GGUF names ("attn_q", …).
    public init?(name: String) {
        guard let p = Projection.allCases.first(where: { $0.shortName == name || $0.ggufName == name }) else { return nil }
        self = p
    }
}

public struct LoRAConfig: Sendable, Equatable {
    public var rank = 16
    public var alpha: Float = 32
    public var targets: [Projection] = Projection.allCases
    /// Adapted layers; nil = all. Negative indices count from the top (-1 = the last layer), so
    /// a recipe can say "the top 10 layers" whatever the model's depth.
    public var layers: [Int]? = nil
    public var seed: UInt64 = 0        // A of slot i comes from RNGKey.loraInit(seed, i)
    /// Multiplies A's init bound per projection (absent: 1). A per-tensor preconditioner for
    /// zero-order training: with A scaled by s, a perturbation of B moves that projection's
    /// output s× as much and the same update moves it s× again, so s scales that tensor's
    /// step size by s² relative to the others, while the file stays a plain LoRA (A is stored).
    public var aScale: [Projection: Float] = [:]
    public init() {}

    public static let maxRank = 1024
}

/// One adapted (layer, projection).
public final class LoRASlot {
    public let layer: Int
    public let proj: Projection
    public let dIn: Int
    public let dOut: Int
    public let rank: Int
    /// Position in `LoRAAdapter.slots`: the RNG tensor id of this slot.
    public let index: Int
    public var a: [Float]   // [rank, dIn] row-major, frozen
    public var b: [Float]   // [dOut, rank] row-major, trained

    init(layer: Int, proj: Projection, dIn: Int, dOut: Int, rank: Int, index: Int, a: [Float], b: [Float]) {
        self.layer = layer
        self.proj = proj
        self.dIn = dIn
        self.dOut = dOut
        self.rank = rank
        self.index = index
        self.a = a
        self.b = b
    }
}

public final class LoRAAdapter {
    /// Normalised: targets in Projection order, layers ascending.
    public let config: LoRAConfig
    public let nLayer: Int
    /// Layer-major, then Projection order. Slot index = RNG tensor id.
    public let slots: [LoRASlot]
    /// Extra `prge.*` training metadata written with the adapter (step, hyper-parameters, …).
    public var metadata: [(String, GGUFValue)] = []
    private let lookup: [Int]   // [nLayer, 7] → slot index, or -1

    public var scale: Float { config.alpha / Float(config.rank) }

    public var trainableCount: Int { slots.reduce(0) { $0 + $1.b.count } }

    /// Where each slot's B starts when all B's lie slot after slot in one vector (a direction
    /// over the whole adapter, LoRAPlan.direction): [slots.count + 1], the last is the total.
    public var flatOffsets: [Int] {
        var o = [0]
        for s in slots { o.append(o.last! + s.b.count) }
        return o
    }

    public func slot(layer: Int, _ p: Projection) -> LoRASlot? {
        guard layer >= 0, layer < nLayer else { return nil }
        let i = lookup[layer * Projection.allCases.count + p.rawValue]
        return i < 0 ? nil : slots[i]
    }

    /// A fresh adapter: A Kaiming-uniform (bound 1/√d_in, PyTorch's default for a Linear layer
    /// and the P-RGE code's; times `aScale[p]` where given), B zero. `shape` gives each
    /// projection's (d_in, d_out).
    public convenience init(config: LoRAConfig, nLayer: Int, shape: (Projection) -> (dIn: Int, dOut: Int)) throws {
        let cfg = try Self.validated(config, nLayer: nLayer)
        var slots: [LoRASlot] = []
        for layer in cfg.layers ?? Array(0..<nLayer) {
            for p in cfg.targets {
                let (dIn, dOut) = shape(p)
                guard (1...Self.maxDim).contains(dIn), (1...Self.maxDim).contains(dOut) else {
                    throw PRGEError.invalid("LoRA: projection \(p.shortName) has shape d_in \(dIn), d_out \(dOut) (need 1...\(Self.maxDim))")
                }
                let r = cfg.rank, index = slots.count
                var a = [Float](repeating: 0, count: r * dIn)
                let bound = (cfg.aScale[p] ?? 1) / Float(dIn).squareRoot()
                a.withUnsafeMutableBufferPointer {
                    fillUniform(into: $0, key: .loraInit(seed: cfg.seed, tensor: UInt32(index)), start: 0, lo: -bound, hi: bound)
                }
                slots.append(LoRASlot(layer: layer, proj: p, dIn: dIn, dOut: dOut, rank: r, index: index,
                                      a: a, b: [Float](repeating: 0, count: dOut * r)))
            }
        }
        try self.init(config: cfg, nLayer: nLayer, slots: slots)
    }

    /// An adapter from given slots (a loaded file). `config` must already be normalised; the
    /// slots must be in canonical order, each with its own index, rank and sizes consistent.
    init(config: LoRAConfig, nLayer: Int, slots: [LoRASlot]) throws {
        let nProj = Projection.allCases.count
        var lookup = [Int](repeating: -1, count: nLayer * nProj)
        var last = -1
        for (i, s) in slots.enumerated() {
            let key = s.layer * nProj + s.proj.rawValue
            guard s.index == i, s.layer >= 0, s.layer < nLayer, key > last, s.rank == config.rank,
                  s.a.count == s.rank * s.dIn, s.b.count == s.dOut * s.rank else {
                throw PRGEError(.internal, "LoRA: slot \(i) (layer \(s.layer) \(s.proj.shortName)) is out of order or mis-sized")
            }
            lookup[key] = i
            last = key
        }
        self.config = config
        self.nLayer = nLayer
        self.slots = slots
        self.lookup = lookup
    }

    static let maxDim = 1 << 20

    /// Checks a config against the model depth and puts it in canonical form.
    static func validated(_ c: LoRAConfig, nLayer: Int) throws -> LoRAConfig {
        guard (1...4096).contains(nLayer) else { throw PRGEError.invalid("LoRA: model has \(nLayer) layers") }
        guard (1...LoRAConfig.maxRank).contains(c.rank) else {
            throw PRGEError.invalid("LoRA: rank \(c.rank) out of range 1...\(LoRAConfig.maxRank)")
        }
        guard c.alpha.isFinite, c.alpha > 0 else { throw PRGEError.invalid("LoRA: alpha \(c.alpha) must be finite and > 0") }
        guard !c.targets.isEmpty else { throw PRGEError.invalid("LoRA: no target projections") }
        guard Set(c.targets).count == c.targets.count else {
            throw PRGEError.invalid("LoRA: duplicate target in \(c.targets.map(\.shortName))")
        }
        if let (p, s) = c.aScale.first(where: { !($0.value.isFinite && $0.value > 0) }) {
            throw PRGEError.invalid("LoRA: a_scale of \(p.shortName) is \(s); it must be finite and > 0")
        }
        var out = c
        out.targets = c.targets.sorted { $0.rawValue < $1.rawValue }
        // Only adapted projections, and 1 is the default: one spelling per config (a recipe's
        // scale for v does not stop a user from leaving v out of the targets).
        out.aScale = c.aScale.filter { c.targets.contains($0.key) && $0.value != 1 }
        if let given = c.layers {
            guard !given.isEmpty else { throw PRGEError.invalid("LoRA: empty layer list (use null for all layers)") }
            if let bad = given.first(where: { $0 < -nLayer || $0 >= nLayer }) {
                throw PRGEError.invalid("LoRA: layer \(bad) out of range -\(nLayer)..<\(nLayer)")
            }
            let layers = given.map { $0 < 0 ? nLayer + $0 : $0 }
            guard Set(layers).count == layers.count else { throw PRGEError.invalid("LoRA: duplicate layer in \(layers)") }
            out.layers = layers.sorted()
        }
        return out
    }
}
