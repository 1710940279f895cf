import PRGE

// The timed workloads of `prge bench`. Step variants run interleaved, one step of each per
// round, so that load from other jobs on the shared machine hits them all alike and their
// ratios stay meaningful even when the absolute times drift.

/// One way of running the standard step.
struct StepVariant {
    let key: String              // JSON key of its median seconds
    let mode: NumericMode
    let estimator: Estimator
    let layers: [Int]?           // adapted layers; nil = all

    /// The standard adapter shape of issue 4, independent of what the recipe defaults to.
    func adapterConfig() -> LoRAConfig {
        var c = LoRAConfig()
        c.rank = 16
        c.alpha = 32
        c.targets = Projection.allCases
        c.layers = layers
        return c
    }
}

enum BenchRuns {
    static let queries = 4

    /// Step seconds of every variant (warm-up steps dropped), in variant order.
    static func steps(_ ctx: Context, _ work: BenchWorkload, _ variants: [StepVariant],
                      steps: Int, warmup: Int) throws -> [[Double]] {
        let steppers = try variants.map { v in
            let adapter = try LoRAAdapter(config: v.adapterConfig(), nLayer: ctx.model.config.nLayer, shape: ctx.model.shape)
            return try ZOStepper(context: ctx, adapter: adapter, objective: work.objective, estimator: v.estimator,
                                 q: queries, eps: Recipe.eps, seed: Recipe.seed)
        }
        var times = [[Double]](repeating: [], count: variants.count)
        for round in 0..<(warmup + steps) {
            for (i, v) in variants.enumerated() {
                ctx.mode = v.mode
                let t = try BenchClock.time { _ = try steppers[i].step(work.step, step: UInt64(round), lr: Recipe.lr) }
                if round >= warmup { times[i].append(t) }
            }
        }
        return times
    }

    /// Seconds of a forward with full-vocabulary logits at the last token of each sequence
    /// (what an inference caller gets), in `mode`.
    static func forward(_ ctx: Context, _ seqs: [[Int32]], mode: NumericMode, reps: Int, warmup: Int) throws -> [Double] {
        ctx.mode = mode
        let batch = Batch(lastTokenOf: seqs)
        var out: [Double] = []
        for i in 0..<(warmup + reps) {
            let t = try BenchClock.time { _ = try ctx.logits(batch) }
            if i >= warmup { out.append(t) }
        }
        return out
    }

    /// The step's sequences as one inference batch: its 4 examples × 2q copies, the same rows
    /// the training forward runs, for the peak-RSS comparison at the same batch.
    static func inferenceBatch(_ work: BenchWorkload) -> [[Int32]] {
        Array(repeating: work.step.map(\.tokens), count: 2 * queries).flatMap { $0 }
    }
}
