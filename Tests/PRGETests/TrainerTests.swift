import Testing
@testable import PRGE
#if canImport(Glibc)
import Glibc
#endif

/// What the trainer tests share: the reference model (loaded once), SST-2 rows, and a tiny
/// configuration that keeps debug-build forwards cheap (rank 2 on two layers, q 2, batch 2).
enum TrainFixtures {
    static let loaded = Result { try Model(path: TestSupport.modelPath) }
    static func model() throws -> Model { try loaded.get() }

    /// Rows `range` of SST-2 dev, as JSONL text.
    static func sst2(_ range: Range<Int>) throws -> String {
        let bytes = try Dataset.readFile(TestSupport.sharedDir + "/data/sst2/dev.jsonl")
        let lines = bytes.split(separator: 0x0A)
        return lines[range].map { String(decoding: $0, as: UTF8.self) + "\n" }.joined()
    }

    /// The tiny config, with `extra` JSON members (text without braces) added.
    static func config(_ extra: String = "", task: String = #""sst2""#) throws -> TrainConfig {
        // Numerics and schedule pinned: the equivalence and resume tests state fp32 tolerances and
        // step-exact learning rates, whatever the recipe's defaults become; plain P-RGE (the
        // guided pair has its own tests, GuideTests).
        let base = #""task": "# + task + #", "q": 2, "batch": 2, "lr": 0.5, "eval_every": 0, "threads": 2, "numeric_mode": "fp32", "schedule": "constant", "guide": null, "adapter": {"rank": 2, "layers": [28, 29]}"#
        return try TrainConfig.parse("{" + base + (extra.isEmpty ? "" : ", " + extra) + "}", source: "test config")
    }

    static func trainer(_ extra: String = "", task: String = #""sst2""#, train: Range<Int> = 0..<8,
                        dev: Range<Int>? = nil) throws -> Trainer {
        let t = try Trainer(model: try model(), config: try config(extra, task: task))
        try t.addJSONL(try sst2(train), source: "train", to: .train)
        if let dev { try t.addJSONL(try sst2(dev), source: "dev", to: .dev) }
        return t
    }

    static func bits(_ a: LoRAAdapter) -> [[UInt32]] { a.slots.map { $0.b.map(\.bitPattern) } }
}

@Suite struct TrainerTests {
    // ---- configuration (no model) -----------------------------------------------------------

    @Test func configDefaultsComeFromTheRecipe() throws {
        let c = try TrainConfig.parse("{}")
        #expect(c.task.name == Recipe.task)
        #expect(c.estimator == Recipe.estimator && c.q == Recipe.q && c.batch == Recipe.batch)
        #expect(c.eps == Recipe.eps && c.lr == Recipe.lr && c.schedule == Recipe.schedule && c.loss == Recipe.loss)
        #expect(c.adapter == Recipe.adapter && c.maxLength == Recipe.maxLength && c.evalEvery == Recipe.evalEvery)
        #expect(c.steps == nil && c.minutes == nil && c.checkpoint == nil)
    }

    /// A task's override in the recipe comes before the user's config: trec trains at η 2e-2
    /// unless the config sets lr; other tasks keep the recipe's η.
    @Test func taskOverridesComeBeforeTheUsersConfig() throws {
        #expect(try TrainConfig.parse(#"{"task": "trec"}"#).lr == 0.02)
        #expect(try TrainConfig.parse(#"{"task": "trec", "lr": 0.1}"#).lr == 0.1)
        #expect(try TrainConfig.parse(#"{"task": "sst2"}"#).lr == Recipe.lr)
    }

    @Test func configAcceptsEveryDocumentedKey() throws {
        let text = """
            {"task": {"template": "{sentence} It was", "labels": [" bad", " good"], "text_fields": ["sentence"], "label_field": "label"},
             "estimator": "rge", "q": 3, "batch": 5, "eps": 0.001, "lr": 0.25, "schedule": "cosine", "loss": "full",
             "lr_min": 0.25, "lr_horizon": 60,
             "steps": 100, "minutes": 2.5, "eval_every": 10, "eval_limit": 50, "seed": 42, "numeric_mode": "bf16",
             "threads": 1, "adapter": {"rank": 4, "alpha": 8, "targets": ["q", "v"], "layers": [1, 0], "seed": 3, "a_scale": {"v": 0.5}},
             "checkpoint": "ck.gguf", "log": "log.jsonl", "step_log": "steps.bin", "model": "m.gguf",
             "train": "t.jsonl", "dev": "d.jsonl", "out": "o.gguf", "max_length": 64, "dev_split": 20}
            """
        let c = try TrainConfig.parse(text)
        #expect(c.task.labels == [" bad", " good"] && c.estimator == .rge && c.q == 3 && c.batch == 5)
        #expect(c.eps == 0.001 && c.lr == 0.25 && c.schedule == .cosine && c.loss == .full && c.steps == 100)
        #expect(c.lrMin == 0.25 && c.lrHorizon == 60)
        // null unsets the optionals whose recipe default is a value, and reads back as null.
        let unset = try TrainConfig.parse(#"{"lr_horizon": null, "eval_limit": null, "adapter": {"layers": null}}"#)
        #expect(unset.lrHorizon == nil && unset.evalLimit == nil && unset.adapter.layers == nil)
        #expect(try TrainConfig.parse(JSONNode(unset.json)).json == unset.json)
        #expect(c.minutes == 2.5 && c.evalEvery == 10 && c.evalLimit == 50 && c.seed == 42 && c.numericMode == .bf16)
        #expect(c.adapter.rank == 4 && c.adapter.alpha == 8 && c.adapter.targets == [.q, .v] && c.adapter.layers == [1, 0])
        #expect(c.adapter.aScale == [.v: 0.5])
        #expect(c.checkpoint == "ck.gguf" && c.stepLog == "steps.bin" && c.maxLength == 64 && c.devSplit == 20)
        // The serialized config reads back as the same config.
        let again = try TrainConfig.parse(JSONNode(c.json))
        #expect(again.json == c.json)
        #expect(try TrainConfig.parse(#"{"task": "prompt_response"}"#).task.kind == .promptResponse)
        #expect(try TrainConfig.parse(#"{"estimator": "mezo"}"#).q == 1)
    }

    @Test func configErrorsNameThePath() {
        expectError(containing: "$.lrr: unknown key") { _ = try TrainConfig.parse(#"{"lrr": 1}"#) }
        expectError(containing: "$.lr: expected number, got string") { _ = try TrainConfig.parse(#"{"lr": "big"}"#) }
        expectError(containing: "$.adapter.rnk: unknown key") { _ = try TrainConfig.parse(#"{"adapter": {"rnk": 2}}"#) }
        expectError(containing: "$.adapter.targets[1]: unknown target 'qq'") { _ = try TrainConfig.parse(#"{"adapter": {"targets": ["q", "qq"]}}"#) }
        expectError(containing: "$.adapter.a_scale.vv: unknown target 'vv'") { _ = try TrainConfig.parse(#"{"adapter": {"a_scale": {"vv": 1}}}"#) }
        expectError(containing: "$.adapter.a_scale.v: a_scale must be > 0") { _ = try TrainConfig.parse(#"{"adapter": {"a_scale": {"v": -1}}}"#) }
        expectError(containing: "$.adapter.a_scale.attn_v: target 'attn_v' repeats") {
            _ = try TrainConfig.parse(#"{"adapter": {"a_scale": {"v": 1, "attn_v": 2}}}"#)
        }
        expectError(containing: "$.schedule: unknown value 'step'") { _ = try TrainConfig.parse(#"{"schedule": "step"}"#) }
        expectError(containing: "$.q: MeZO uses one direction") { _ = try TrainConfig.parse(#"{"estimator": "mezo", "q": 4}"#) }
        expectError(containing: "$.task: unknown task 'sst3'") { _ = try TrainConfig.parse(#"{"task": "sst3"}"#) }
        expectError(containing: "$.task.labels: missing") { _ = try TrainConfig.parse(#"{"task": {"template": "{x}"}}"#) }
        expectError(containing: "$.q: 0 is out of range") { _ = try TrainConfig.parse(#"{"q": 0}"#) }
        expectError(containing: "$.eps: must be > 0") { _ = try TrainConfig.parse(#"{"eps": 0}"#) }
        expectError(containing: "$.lr_min: must be in [0, 1]") { _ = try TrainConfig.parse(#"{"lr_min": 1.5}"#) }
        expectError(containing: "$.lr_horizon: 0 is out of range") { _ = try TrainConfig.parse(#"{"lr_horizon": 0}"#) }
    }

    @Test func schedules() {
        #expect(Schedule.constant.factor(0.7) == 1)
        #expect(Schedule.linear.factor(0.25) == 0.75)
        #expect(abs(Schedule.cosine.factor(0.5) - 0.5) < 1e-12 && Schedule.cosine.factor(0) == 1)
        #expect(Schedule.linear.factor(2) == 0)
    }

    /// lr · (lr_min + (1 − lr_min) · factor(t)), t = max(step / steps, step / lr_horizon): the
    /// horizon ends the decay early in a long run, the floor stays after it.
    @Test func learningRateHorizonAndFloor() throws {
        let model = try TrainFixtures.model()
        func lr(_ extra: String, at s: UInt64) throws -> Float {
            let c = try TrainConfig.parse(#"{"lr": 0.5, "schedule": "cosine", "steps": 100, "numeric_mode": "fp32", "adapter": {"rank": 2, "layers": [29]}"# + extra + "}")
            return try Trainer(model: model, config: c).learningRate(at: s)
        }
        let f = { (t: Double) in Float(0.5 * (0.1 + 0.9 * Schedule.cosine.factor(t))) }
        #expect(try lr(#", "lr_min": 0.1, "lr_horizon": 40"#, at: 0) == 0.5)
        #expect(try lr(#", "lr_min": 0.1, "lr_horizon": 40"#, at: 20) == f(0.5))       // the horizon's t, not 0.2
        #expect(try lr(#", "lr_min": 0.1, "lr_horizon": 40"#, at: 80) == f(1))         // the floor: 0.05
        #expect(try lr(#", "lr_min": 0.1, "lr_horizon": 400"#, at: 20) == f(0.2))      // steps end first
        #expect(try lr(#", "lr_min": 0, "lr_horizon": null"#, at: 20) == Float(0.5 * Schedule.cosine.factor(0.2)))
    }

    // ---- sampler (no model) ----------------------------------------------------------------

    /// Each epoch visits every example once; the order is a pure function of (seed, epoch).
    @Test func samplerEpochsArePermutations() {
        let s = Sampler(seed: 3, batch: 4)
        let e0 = s.order(epoch: 0, n: 10), e1 = s.order(epoch: 1, n: 10)
        #expect(e0.sorted() == Array(0..<10) && e1.sorted() == Array(0..<10))
        #expect(e0 != e1)
        #expect(Sampler(seed: 3, batch: 4).order(epoch: 1, n: 10) == e1)
        #expect(Sampler(seed: 4, batch: 4).order(epoch: 1, n: 10) != e1)
        // Steps 0..4 of batch 4 over 10 examples: epoch 0, then epoch 1, then epoch 1's rest.
        let drawn = (0..<5).flatMap { s.indices(step: UInt64($0), n: 10) }
        #expect(Array(drawn[0..<10]) == e0 && Array(drawn[10..<20]) == e1)
        #expect(Sampler(seed: 3, batch: 4).indices(step: 3, n: 10) == Array(e1[2..<6]))
    }

    /// eval_limit picks examples spread over the dev set, not its prefix: a dev file sorted by
    /// label (MR's is) must still be evaluated on both classes. Fixed subset, file order.
    @Test func evalLimitSpreadsOverTheSet() throws {
        // Row i: tokens [i], label 0 for the first half (sorted by label, as MR's dev file is).
        let set = (0..<500).map { Sample(tokens: [Int32($0)], target: .label($0 < 250 ? 0 : 1)) }
        let sub = Trainer.spread(set, limit: 200)
        let rows = sub.map { Int($0.tokens[0]) }
        #expect(rows.count == 200 && Set(rows).count == 200 && rows == rows.sorted())
        #expect((70...130).contains(rows.filter { $0 < 250 }.count))   // a prefix would give 200
        #expect(Trainer.spread(set, limit: 200) == sub)
        #expect(Trainer.spread(set, limit: 500) == set && Trainer.spread(set, limit: nil) == set)
    }

    // ---- data ------------------------------------------------------------------------------

    @Test func jsonlIsAllOrNothingAndNamesTheLine() throws {
        let t = try Trainer(model: try TrainFixtures.model(), config: try TrainFixtures.config())
        let good = try TrainFixtures.sst2(0..<2)
        expectError(containing: "data.jsonl:4: JSON syntax error") {
            try t.addJSONL(good + "\n{\"sentence\": \"x\", \"label\": 1\n", source: "data.jsonl", to: .train)
        }
        expectError(containing: "data.jsonl:3: $.label: 2 is out of range") {
            try t.addJSONL(good + #"{"sentence": "x", "label": 2}"#, source: "data.jsonl", to: .train)
        }
        #expect(t.trainSet.isEmpty)
        #expect(try t.addJSONL(good, to: .dev) == 2 && t.devSet.count == 2)
        expectError(containing: "training set is empty") { try t.run(maxSteps: 1) }
    }

    /// dev_split: the first N rows of the dev file are dev, the rest train (boolq has no train file).
    @Test func devSplitSplitsTheDevFile() throws {
        let dir = try TempDir()
        let path = dir.path + "/dev.jsonl"
        let text = try TrainFixtures.sst2(0..<5)
        let f = fopen(path, "w")!
        fputs(text, f)
        fclose(f)
        let t = try Trainer(model: try TrainFixtures.model(), config: try TrainFixtures.config(#""dev": "\#(path)", "dev_split": 2"#))
        try t.loadConfiguredData()
        let direct = try Trainer(model: try TrainFixtures.model(), config: try TrainFixtures.config())
        try direct.addJSONL(try TrainFixtures.sst2(0..<2), to: .dev)
        try direct.addJSONL(try TrainFixtures.sst2(2..<5), to: .train)
        #expect(t.devSet == direct.devSet && t.trainSet == direct.trainSet)
        let bad = try Trainer(model: try TrainFixtures.model(), config: try TrainFixtures.config(#""dev": "\#(path)", "dev_split": 5"#))
        expectError(containing: "leave none of the 5 rows") { try bad.loadConfiguredData() }
    }

    // ---- adapters --------------------------------------------------------------------------

    /// A trained adapter saved to GGUF and loaded into a new trainer is the same adapter: same
    /// bits, same step count, same evaluation.
    @Test func adapterSaveLoadRoundTrip() throws {
        let dir = try TempDir()
        let t = try TrainFixtures.trainer(train: 0..<4, dev: 4..<6)
        try t.step(samples: Array(t.trainSet[0..<2]))
        let path = dir.path + "/adapter.gguf"
        try AdapterFile.save(try t.currentAdapter(), to: path, architecture: try t.architecture)
        let loaded = try AdapterFile.load(path: path, model: try TrainFixtures.model().gguf)
        let u = try Trainer(model: try TrainFixtures.model(), config: try TrainFixtures.config(), adapter: loaded)
        #expect(TrainFixtures.bits(u.adapter) == TrainFixtures.bits(t.adapter))
        #expect(u.adapter.slots.map(\.a) == t.adapter.slots.map(\.a))
        #expect(u.steps == 1)   // continues the adapter's step count
        try u.addJSONL(try TrainFixtures.sst2(4..<6), to: .dev)
        #expect(try u.evaluate(split: .dev) == t.evaluate(split: .dev))
    }

    // ---- learning --------------------------------------------------------------------------

    /// Dev loss before and after `steps` P-RGE steps on SST-2 dev rows `train`, scored on rows
    /// `dev`. Every knob that sets the step size is pinned (q 4, b 8, ε 5e-2, lr 0.3, rank 4 /
    /// α 12 on the last layer, seed 1) so that a recipe change cannot move these tests, and so
    /// are the label words (MeZO's terrible / great: the built-in sst2's negative / positive
    /// start lower, e.g. 0.56 instead of 0.78 on rows 0..<8).
    private func lossBeforeAndAfter(steps: UInt64, train: Range<Int>, dev: Range<Int>) throws -> (Float, Float) {
        let task = #"{"template": "{sentence} It was", "labels": [" terrible", " great"]}"#
        let t = try TrainFixtures.trainer(#""seed": 1, "q": 4, "lr": 0.3, "eps": 0.05, "batch": 8, "adapter": {"rank": 4, "alpha": 12, "layers": [29]}"#,
                                          task: task, train: train, dev: dev)
        let before = try t.evaluate(split: .dev).loss
        try t.run(maxSteps: steps)
        return (before, try t.evaluate(split: .dev).loss)
    }

    /// The model fits its own training examples: 8 SST-2 sentences, the minibatch is all 8, and
    /// the loss (candidate cross-entropy) is measured on those same 8 before and after 5 P-RGE
    /// steps. This shows the whole loop (sampler → perturbed forward → g → update) moves B
    /// downhill on real data; it says nothing about generalisation (the next test and the
    /// recipe's dev numbers do that). Seeds 1–8 took the loss from 0.78 to 0.37–0.52 (the
    /// smallest drop 0.26); the test asks for 0.1. Three steps of q 2 at lr 0.1, which this test
    /// used to run, dropped it by only 0.02–0.29: too close to its bar.
    @Test func trainingLowersTheLossOnItsExamples() throws {
        let (before, after) = try lossBeforeAndAfter(steps: 5, train: 0..<8, dev: 0..<8)
        #expect(after < before - 0.1, "loss on the 8 training examples \(before) → \(after)")
    }

    /// What the issue asks of a short real run: the loss on sentences it never trains on goes
    /// down. 10 P-RGE steps drawn from 64 SST-2 sentences; dev is 32 others. Seeds 1–5 took the
    /// dev loss from 1.01 to 0.65–0.73 (the smallest drop 0.28); the test asks for 0.1.
    @Test func devLossFallsOnHeldOutSentences() throws {
        let (before, after) = try lossBeforeAndAfter(steps: 10, train: 0..<64, dev: 100..<132)
        #expect(after < before - 0.1, "dev loss on 32 held-out sentences \(before) → \(after)")
    }
    /// The kept adapter is the one with the lowest dev loss among all evaluations (the untrained
    /// one included), whatever their accuracies; it is what `bestAdapter` returns.
    @Test func keepsTheAdapterWithTheLowestDevLoss() throws {
        let dir = try TempDir()
        let t = try TrainFixtures.trainer(#""eval_every": 1, "log": "\#(dir.path)/log.jsonl""#, train: 0..<16, dev: 100..<116)
        try t.run(maxSteps: 5)
        try t.syncLogs()
        let text = String(decoding: try Dataset.readFile(dir.path + "/log.jsonl"), as: UTF8.self)
        var evals: [(step: UInt64, loss: Float)] = []
        for line in text.split(separator: "\n") {
            let node = JSONNode(try JSONValue.parse(String(line)))
            guard try node.field("type")?.string() == "eval" else { continue }
            evals.append((UInt64(try node.field("step")!.double()), try node.field("loss")!.float()))
        }
        #expect(evals.count == 6)
        let lowest = try #require(evals.min { $0.loss < $1.loss })
        let best = try #require(t.best)
        #expect(best.step == lowest.step && best.eval.loss == lowest.loss)
        let kept = try Evaluation.run(t.devSet, objective: t.objective, context: t.context, adapter: try t.bestAdapter())
        #expect(kept.loss == lowest.loss)
    }
}
