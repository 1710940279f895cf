// The library's default training recipe: every value a trainer uses when its JSON config leaves
// a key out. This is the ONE place to change the defaults; TrainConfig reads them from here,
// and `prge train` without --config trains with exactly this.
//
// Status: a first guess, being tuned by measurement on SST-2 dev (issue 3). The P-RGE authors'
// η (5e-5 … 1e-3) was measured on larger fp16 models; on SmolLM2-135M the useful range was
// reported two orders of magnitude higher, so `lr` below is a placeholder until measured.
//
// Per-task overrides: `taskOverrides[name]` holds config members (exactly as they would be
// written in the JSON config) applied on top of these defaults for that task, before the
// user's own config. Keep it empty unless a measurement says a task needs something else, and
// then say here which measurement.

public enum Recipe {
    /// The task of a config without "task": the one the recipe is measured on.
    public static let task = "sst2"
    public static let estimator: Estimator = .prge
    public static let q = 4
    public static let batch = 4
    public static let eps: Float = 1e-2
    public static let lr: Float = 1e-3              // placeholder, see above
    public static let schedule: Schedule = .constant
    public static let loss: LossKind = .candidates
    /// Steps between dev evaluations (0: only at the end of a run).
    public static let evalEvery = 50
    /// Dev examples per evaluation (nil: all).
    public static let evalLimit: Int? = 200
    /// Prompt length cap in tokens (longer prompts lose their beginning).
    public static let maxLength = 256
    public static let seed: UInt64 = 0

    /// LoRA-FA shape: rank 16, α 32, all seven projections, all layers (DESIGN.md defaults).
    public static var adapter: LoRAConfig {
        var c = LoRAConfig()
        c.rank = 16
        c.alpha = 32
        c.targets = Projection.allCases
        c.layers = nil
        c.seed = 0
        return c
    }

    /// Per-task deviations from the defaults above, as JSON config members. None yet.
    public static let taskOverrides: [String: [(String, JSONValue)]] = [:]
}
