/// The zeroth-order gradient estimators, all on the same engine and the same RNG stream, so
/// that they differ only in how the ±ε forwards are scheduled.
public enum Estimator: String, Sendable, CaseIterable {
    /// P-RGE: all q directions × (+ε, −ε) as 2q copies of the batch in ONE forward.
    case prge
    /// Sequential RGE: the same q directions, 2q separate forwards.
    case rge
    /// MeZO / SPSA: one direction, two sequential forwards (rge with q = 1).
    case mezo
}

/// Everything that defines one update: B ← B − lr · (1/q) Σ_i g_i z_i with
/// z_i = N(0, I) from (seed, step, i, slot). 8 + 4q bytes of it rebuild the adapter by replay.
public struct StepRecord: Sendable, Equatable {
    public var seed: UInt64
    public var step: UInt64
    public var lr: Float
    public var eps: Float
    public var g: [Float]          // projected gradients (L⁺_i − L⁻_i) / 2ε, one per direction
    public init(seed: UInt64, step: UInt64, lr: Float, eps: Float, g: [Float]) {
        self.seed = seed; self.step = step; self.lr = lr; self.eps = eps; self.g = g
    }
}

/// The guided pair (Guide.swift): after P-RGE's 2q copies, one ± pair along the direct-path
/// guide u (a unit vector over all of B), and B ← B − lr_ratio·lr · g_u · u.
public struct GuideOptions: Sendable, Equatable {
    /// The guided step's lr as a multiple of the step's (so the schedule applies to both).
    public var lrRatio: Float
    public var eps: Float
    public init(lrRatio: Float, eps: Float) { self.lrRatio = lrRatio; self.eps = eps }
}

/// One step's measurement along the guide.
public struct GuideStep: Sendable {
    public var g: Float            // (L⁺ − L⁻) / 2ε along u
    public var lr: Float
    public var lossPlus: Float, lossMinus: Float
    public var direction: [Float]  // u, LoRAAdapter.flatOffsets order
}

public struct StepResult: Sendable {
    public var record: StepRecord
    public var lossPlus: [Float]   // L⁺_i
    public var lossMinus: [Float]  // L⁻_i
    /// The guided pair's measurement, when the stepper has one (nil also when the guide was zero).
    public var guide: GuideStep?
    /// Mean of all 2q losses: the loss at B, to second order in ε.
    public var loss: Float { (lossPlus.reduce(0, +) + lossMinus.reduce(0, +)) / Float(2 * lossPlus.count) }
}

/// Runs estimator steps of one adapter on one context.
public final class ZOStepper {
    public let context: Context
    public let adapter: LoRAAdapter
    public let objective: Objective
    public let estimator: Estimator
    public let q: Int
    public let eps: Float
    public let seed: UInt64
    public let guide: GuideOptions?

    public init(context: Context, adapter: LoRAAdapter, objective: Objective,
                estimator: Estimator, q: Int, eps: Float, seed: UInt64, guide: GuideOptions? = nil) throws {
        guard (1...256).contains(q) else { throw PRGEError.invalid("q = \(q) must be in 1...256") }
        guard estimator != .mezo || q == 1 else { throw PRGEError.invalid("MeZO uses one direction: q must be 1, got \(q)") }
        guard eps > 0, eps.isFinite else { throw PRGEError.invalid("eps = \(eps) must be a positive number") }
        if let gd = guide {
            guard estimator == .prge, objective.task.kind == .classification, objective.loss == .candidates else {
                throw PRGEError.invalid("the guide needs the prge estimator on a classification task with the candidates loss")
            }
            guard gd.eps > 0, gd.eps.isFinite, gd.lrRatio >= 0, gd.lrRatio.isFinite else {
                throw PRGEError.invalid("guide eps \(gd.eps) must be > 0 and lr_ratio \(gd.lrRatio) >= 0")
            }
        }
        self.guide = guide
        self.context = context
        self.adapter = adapter
        self.objective = objective
        self.estimator = estimator
        self.q = q
        self.eps = eps
        self.seed = seed
    }

    /// The 2q losses at B ± ε z_i on `samples`, scheduled as the estimator says.
    public func losses(_ samples: [Sample], step: UInt64) throws -> (plus: [Float], minus: [Float]) {
        guard !samples.isEmpty else { throw PRGEError.invalid("a step needs at least one example") }
        let b = objective.batch(samples), t = objective.targets(samples)
        switch estimator {
        case .prge:
            let plan = LoRAPlan.prge(adapter: adapter, queries: q, seed: seed, step: step, eps: eps)
            let l = objective.copyLosses(try objective.logits(context, b, plan), targets: t, copies: 2 * q)
            return (Array(l[..<q]), Array(l[q...]))
        case .rge, .mezo:
            var plus: [Float] = [], minus: [Float] = []
            for i in 0..<q {
                for sign: Float in [1, -1] {
                    let plan = LoRAPlan(adapter: adapter, copies: [.init(query: i, sign: sign)], seed: seed, step: step, eps: eps)
                    let l = objective.copyLosses(try objective.logits(context, b, plan), targets: t, copies: 1)[0]
                    if sign > 0 { plus.append(l) } else { minus.append(l) }
                }
            }
            return (plus, minus)
        }
    }

    /// The estimate of one step without touching B: the losses and the record that
    /// `applyUpdate` turns into the update (callers may log the record first).
    public func estimate(_ samples: [Sample], step: UInt64, lr: Float) throws -> StepResult {
        guard lr.isFinite, lr >= 0 else { throw PRGEError.invalid("learning rate \(lr) must be a non-negative number") }
        // The guide reads the activations of direction 0's ± pair (copies 0 and q).
        let capture = guide == nil ? nil : ActivationCapture(copies: [0, q])
        context.capture = capture
        context.keepLower = capture != nil          // the guided pair reruns only the adapted layers
        defer { context.capture = nil; context.keepLower = false }
        let (plus, minus) = try losses(samples, step: step)
        context.capture = nil
        let g = zip(plus, minus).map { ($0 - $1) / (2 * eps) }
        guard g.allSatisfy(\.isFinite) else {
            throw PRGEError(.state, "step \(step): non-finite loss (L+ \(plus), L- \(minus)); the learning rate is probably too high")
        }
        var r = StepResult(record: StepRecord(seed: seed, step: step, lr: lr, eps: eps, g: g), lossPlus: plus, lossMinus: minus)
        if let opt = guide, let cap = capture { r.guide = try guided(samples, cap, opt, step: step, lr: lr) }
        return r
    }

    /// The ± pair along the direct-path guide of `cap`'s activations (nil if the guide is zero).
    private func guided(_ samples: [Sample], _ cap: ActivationCapture, _ opt: GuideOptions, step: UInt64, lr: Float) throws -> GuideStep? {
        let t = objective.targets(samples)
        guard let u = context.directPathGuide(cap, adapter: adapter, candidates: objective.candidates, targets: t) else { return nil }
        var plan = LoRAPlan(adapter: adapter, copies: [.init(query: 0, sign: 1), .init(query: 0, sign: -1)], seed: seed, step: step, eps: opt.eps)
        plan.direction = u
        let l = objective.copyLosses(try objective.logits(context, objective.batch(samples), plan), targets: t, copies: 2)
        let g = (l[0] - l[1]) / (2 * opt.eps)
        guard g.isFinite else { throw PRGEError(.state, "step \(step): non-finite loss along the guide (L+ \(l[0]), L- \(l[1]))") }
        return GuideStep(g: g, lr: opt.lrRatio * lr, lossPlus: l[0], lossMinus: l[1], direction: u)
    }

    /// One full step: estimate, then update B in place.
    public func step(_ samples: [Sample], step: UInt64, lr: Float) throws -> StepResult {
        let r = try estimate(samples, step: step, lr: lr)
        apply(r)
        return r
    }

    /// B ← B − lr · (1/q) Σ g_i z_i, then the guided pair's step when there is one.
    public func apply(_ r: StepResult) {
        applyUpdate(r.record, to: adapter, pool: context.pool)
        if let gs = r.guide { applyDirection(gs.direction, coef: gs.lr * gs.g, to: adapter) }
    }
}

/// B ← B − lr · (1/q) Σ_i g_i z_i for every slot. Each slot is updated by one task in a fixed
/// order, so the result is bit-identical for any thread count; replay calls this too.
public func applyUpdate(_ r: StepRecord, to adapter: LoRAAdapter, pool: ThreadPool? = nil) {
    let q = r.g.count
    guard q > 0 else { return }
    let slots = adapter.slots
    let maxN = slots.map { $0.b.count }.max() ?? 0
    let body: (Int) -> Void = { si in
        let slot = slots[si], n = slot.b.count
        let z = UnsafeMutablePointer<Float>.allocate(capacity: max(maxN, 1))
        defer { z.deallocate() }
        slot.b.withUnsafeMutableBufferPointer { b in
            for i in 0..<q {
                fillNormal(into: UnsafeMutableBufferPointer(start: z, count: n),
                           key: RNGKey(seed: r.seed, step: r.step, query: UInt32(i), tensor: UInt32(slot.index)), start: 0)
                let c = r.lr * r.g[i] / Float(q)
                for j in 0..<n { b[j] -= c * z[j] }
            }
        }
    }
    if let p = pool { p.parallelFor(slots.count, body) } else { for i in 0..<slots.count { body(i) } }
}
