import Testing
@testable import PRGE

/// The direct-path guide (ZO/Guide.swift) and the guided pair it adds to a P-RGE step.
@Suite struct GuideTests {
    /// The loss's finite difference along `v` (a direction over all of B), fp32.
    func slope(_ t: Trainer, _ v: [Float], h: Float) throws -> Float {
        let l = try pair(t, v, h: h)
        return (l[0] - l[1]) / (2 * h)
    }

    /// The losses at B ± h·v, by full forwards.
    func pair(_ t: Trainer, _ v: [Float], h: Float) throws -> [Float] {
        var plan = LoRAPlan(adapter: t.adapter, copies: [.init(query: 0, sign: 1), .init(query: 0, sign: -1)], seed: 0, step: 0, eps: h)
        plan.direction = v
        let o = t.objective
        return o.copyLosses(try o.logits(t.context, o.batch(t.trainSet), plan), targets: o.targets(t.trainSet), copies: 2)
    }

    /// The guide at B itself (one unperturbed copy captured).
    func guide(_ t: Trainer) throws -> [Float] {
        let cap = ActivationCapture(copies: [0])
        t.context.capture = cap
        defer { t.context.capture = nil }
        _ = try t.objective.logits(t.context, t.objective.batch(t.trainSet), LoRAPlan(adapter: t.adapter))
        return try #require(t.context.directPathGuide(cap, adapter: t.adapter, candidates: t.objective.candidates,
                                                         targets: t.objective.targets(t.trainSet)))
    }

    /// In the last block the MLP sees only the last token and its output reaches the final norm
    /// unchanged, so there the direct path is the whole gradient: the guide's entries, times the
    /// slope along the guide (|gradient|), match finite differences along single entries of B.
    /// Checked on the 12 largest entries of each of gate, up and down (fp32, h = 1e-2 on the
    /// raw entry; forward rounding of ~1e-6 in L gives ~1e-4 in a slope). Tolerance: 3 % of the
    /// largest entry. Measured: worst error 0.1 % of it (3.5e-5 of 0.035).
    @Test func guideIsTheGradientInTheLastBlock() throws {
        let t = try TrainFixtures.trainer(#""adapter": {"rank": 2, "layers": [29], "targets": ["gate", "up", "down"]}"#, train: 0..<4)
        for s in t.adapter.slots { for j in 0..<s.b.count { s.b[j] = Float((j * 7) % 11) * 2e-3 - 1e-2 } }
        let u = try guide(t)
        let norm = try slope(t, u, h: 1e-2)                          // |gradient| if u is its direction
        #expect(norm > 0)
        let offsets = t.adapter.flatOffsets
        var worst: Float = 0, largest: Float = 0
        for s in t.adapter.slots {
            let range = offsets[s.index]..<offsets[s.index + 1]
            for k in range.sorted(by: { abs(u[$0]) > abs(u[$1]) }).prefix(12) {
                var e = [Float](repeating: 0, count: u.count)
                e[k] = 1
                let fd = try slope(t, e, h: 1e-2)
                worst = max(worst, abs(fd - norm * u[k]))
                largest = max(largest, abs(norm * u[k]))
            }
        }
        #expect(largest > 0 && worst <= 0.03 * largest, "worst |fd − guide| \(worst), largest entry \(largest)")
    }

    /// The attention side of the last block: o and v get δ plus the block's own MLP path back to
    /// the attention output, v through the last token's attention weights to every row's value,
    /// q and k through the softmax (and RoPE turned back). With that the guide is the whole
    /// gradient there too. Same check and tolerance as the MLP's; measured: worst error 0.7 % of
    /// the largest entry (v), cosine over the 24 largest entries ≥ 0.9999.
    @Test(arguments: ["q", "k", "v", "o"])
    func attentionGuideIsTheGradientInTheLastBlock(_ target: String) throws {
        let t = try TrainFixtures.trainer(#""adapter": {"rank": 2, "layers": [29], "targets": ["\#(target)"]}"#, train: 0..<4)
        for s in t.adapter.slots { for j in 0..<s.b.count { s.b[j] = Float((j * 7) % 11) * 2e-3 - 1e-2 } }
        let u = try guide(t)
        let norm = try slope(t, u, h: 1e-2)
        var worst: Float = 0, largest: Float = 0
        for k in u.indices.sorted(by: { abs(u[$0]) > abs(u[$1]) }).prefix(24) {
            var e = [Float](repeating: 0, count: u.count)
            e[k] = 1
            let fd = try slope(t, e, h: 1e-2)
            worst = max(worst, abs(fd - norm * u[k]))
            largest = max(largest, abs(norm * u[k]))
        }
        print("\(target): worst \(worst), largest \(largest)")
        #expect(largest > 0 && worst <= 0.03 * largest, "\(target): worst |fd − guide| \(worst), largest entry \(largest)")
    }

    /// A guided step is deterministic like a plain one: 1 and 2 threads give the same bits,
    /// and the guided pair moved B (the guide is not silently off). Its pair starts from the
    /// stream the first forward kept below the adapted layers, with the bits of a full forward.
    @Test func guidedStepsAreBitIdenticalAcrossThreadCounts() throws {
        let guided = #""guide": {"lr_ratio": 50, "eps": 0.05}"#
        let one = try TrainFixtures.trainer(guided + #", "threads": 1"#, train: 0..<4)
        let two = try TrainFixtures.trainer(guided + #", "threads": 2"#, train: 0..<4)
        let r = try one.step(samples: one.trainSet)
        try two.step(samples: two.trainSet)
        #expect(TrainFixtures.bits(one.adapter) == TrainFixtures.bits(two.adapter))
        let g = try #require(r.guide)
        #expect(g.g.isFinite && g.g != 0 && g.lr == 50 * one.config.lr)
        let fresh = try TrainFixtures.trainer(guided, train: 0..<4)
        #expect(try pair(fresh, g.direction, h: 0.05) == [g.lossPlus, g.lossMinus])
        let plain = try TrainFixtures.trainer(#""threads": 1"#, train: 0..<4)
        try plain.step(samples: plain.trainSet)
        #expect(TrainFixtures.bits(plain.adapter) != TrainFixtures.bits(one.adapter))
    }

    /// Checkpoint and resume with the guide on: it is rebuilt from B and the batch, so stopping
    /// and resuming gives what not stopping gives, bit for bit; a trainer without the guide
    /// refuses the checkpoint.
    @Test func guidedResumeIsBitExact() throws {
        let dir = try TempDir()
        func config(_ name: String) -> String { #""guide": {"lr_ratio": 20}, "eval_every": 2, "checkpoint": "\#(dir.path)/\#(name).gguf""# }
        let whole = try TrainFixtures.trainer(config("whole"), train: 0..<6, dev: 6..<8)
        try whole.run(maxSteps: 4)
        let first = try TrainFixtures.trainer(config("split"), train: 0..<6, dev: 6..<8)
        try first.run(maxSteps: 2)
        let second = try TrainFixtures.trainer(config("split"), train: 0..<6, dev: 6..<8)
        try second.resume(from: dir.path + "/split.gguf")
        try second.run(maxSteps: 2)
        #expect(TrainFixtures.bits(second.adapter) == TrainFixtures.bits(whole.adapter))
        #expect(TrainFixtures.bits(first.adapter) != TrainFixtures.bits(whole.adapter))
        expectError(containing: "guide") {
            try TrainFixtures.trainer(#""guide": null"#, train: 0..<6, dev: 6..<8).resume(from: dir.path + "/split.gguf")
        }
    }

    /// The guide is a classification option of P-RGE; anything else is a clear error.
    @Test func guideRefusesWhatItCannotGuide() throws {
        let g = #""guide": {"lr_ratio": 50}"#
        #expect(throws: PRGEError.self) { try TrainFixtures.trainer(g + #", "estimator": "rge""#) }
        #expect(throws: PRGEError.self) { try TrainFixtures.trainer(g + #", "loss": "full""#) }
        #expect(throws: PRGEError.self) { try TrainConfig.parse(#"{"guide": {"lr_ratio": -1}}"#) }
        #expect(throws: PRGEError.self) { try TrainConfig.parse(#"{"guide": {"eps": 0}}"#) }
        #expect(throws: PRGEError.self) { try TrainConfig.parse(#"{"guide": {"step": 1}}"#) }
        let dir = try TempDir()
        let t = try TrainFixtures.trainer(g + #", "step_log": "\#(dir.path)/s.bin""#, train: 0..<2)
        #expect(throws: PRGEError.self) { try t.step(samples: t.trainSet) }
        // The config round-trips, and null turns the guide off.
        let c = try TrainConfig.parse(#"{"guide": {"lr_ratio": 20, "eps": 0.1}}"#)
        #expect(c.guide == GuideOptions(lrRatio: 20, eps: 0.1))
        #expect(try TrainConfig.parse(JSONNode(c.json, source: "round trip")).guide == c.guide)
        #expect(try TrainConfig.parse(#"{"guide": null}"#).guide == nil)
        // The recipe's guide is on where it applies and steps aside where it cannot.
        #expect(try TrainConfig.parse("{}").guide == Recipe.guide && Recipe.guide != nil)
        for other in [#"{"loss": "full"}"#, #"{"estimator": "mezo"}"#, #"{"task": "prompt_response"}"#, #"{"step_log": "s.bin"}"#] {
            #expect(try TrainConfig.parse(other).guide == nil, "\(other)")
        }
    }
}
