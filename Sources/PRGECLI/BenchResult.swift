import PRGE

// What `prge bench` measured and how it is printed: one flat JSON object (keys scripts can
// track; issue 4 fixes step_seconds, step_seconds_fp32, forward_tokens_per_second and
// peak_rss_mb) or a readable table. Every rate is derived here from the raw times, which the
// JSON also carries under "times" so a reader can check the medians.

struct BenchResult {
    let settings: BenchSettings
    var loadBefore = Double.nan, loadAfter = Double.nan
    var peaks = (fp32: 0.0, bf16: 0.0, int8: 0.0)
    var loadSeconds = 0.0
    var work: BenchWorkload?
    var config: LlamaConfig?
    var variants: [StepVariant] = []
    var stepTimes: [[Double]] = []
    var forward: [NumericMode: [Double]] = [:], long: [NumericMode: [Double]] = [:]
    var rss: [String: Double] = [:]

    init(settings: BenchSettings) { self.settings = settings }

    // ---- derived figures ------------------------------------------------------------------

    func seconds(_ key: String) -> Double {
        variants.firstIndex { $0.key == key }.map { BenchClock.median(stepTimes[$0]) } ?? .nan
    }

    func stepFlops(_ v: StepVariant) -> FlopCount {
        let c = config!, w = work!
        let width = Recipe.loss == .full ? c.nVocab : w.objective.candidates.count
        return FlopCount(c, lens: w.step.map(\.tokens.count), copies: 2 * BenchRuns.queries,
                         adapter: v.adapterConfig(), outputs: w.step.count, width: width)
    }

    func forwardFlops(_ seqs: [[Int32]]) -> FlopCount {
        FlopCount(config!, lens: seqs.map(\.count), copies: 1, adapter: nil, outputs: seqs.count, width: config!.nVocab)
    }

    var stepTokens: Int { work!.step.reduce(0) { $0 + $1.tokens.count } }

    // ---- JSON -------------------------------------------------------------------------------

    var json: JSONValue {
        let s = settings, w = work!
        var o: [(String, JSONValue)] = [
            ("cpu", .string(BenchMachine.cpuModel())), ("threads", num(Double(s.threads))),
            ("matmul_path", .string(BenchMachine.matmulPath)),
            ("load_avg_before", num(loadBefore, 2)), ("load_avg_after", num(loadAfter, 2)),
            ("fp32_peak_gflops", num(peaks.fp32, 1)), ("bf16_peak_gflops", num(peaks.bf16, 1)), ("int8_peak_gops", num(peaks.int8, 1)),
            ("model", .string(s.model)), ("model_load_seconds", num(loadSeconds, 4)),
            ("mode", .string(s.mode.rawValue)), ("steps", num(Double(s.steps))), ("warmup", num(Double(s.warmup))),
            ("step_examples", num(Double(w.step.count))), ("step_queries", num(Double(BenchRuns.queries))),
            ("step_tokens_per_copy", num(Double(stepTokens))),
            ("step_rows", num(Double(stepTokens * 2 * BenchRuns.queries))),
        ]
        for v in variants {
            let t = seconds(v.key), f = stepFlops(v).total
            o.append((v.key, num(t, 4)))
            o.append((v.key.replacingSeconds("gflop"), num(f / 1e9, 2)))
            o.append((v.key.replacingSeconds("gflops"), num(f / t / 1e9, 1)))
        }
        let std = stepFlops(variants[0]), t0 = seconds("step_seconds"), t32 = seconds("step_seconds_fp32")
        o += [
            ("step_fraction_of_fp32_peak", num(std.total / t0 / 1e9 / peaks.fp32, 3)),
            ("step_fraction_of_bf16_peak", num(std.total / t0 / 1e9 / peaks.bf16, 3)),
            ("step_fraction_of_int8_peak", num(std.total / t0 / 1e9 / peaks.int8, 3)),
            ("step_fp32_fraction_of_fp32_peak", num(std.total / t32 / 1e9 / peaks.fp32, 3)),
            ("fp32_over_default", num(t32 / t0, 3)),
            ("rge_over_prge", num(seconds("step_seconds_rge") / t0, 3)),
            ("top_half_speedup", num(t0 / seconds("step_seconds_top_half"), 3)),
            ("step_gflop_linear", num(std.linear / 1e9, 2)), ("step_gflop_lora", num(std.lora / 1e9, 2)),
            ("step_gflop_attention", num(std.attention / 1e9, 3)), ("step_gflop_output", num(std.output / 1e9, 4)),
        ]
        for (name, seqs, runs) in [("forward", w.forward, forward), ("forward_512", [w.long], long)] {
            let tokens = Double(seqs.reduce(0) { $0 + $1.count }), f = forwardFlops(seqs).total
            o.append(("\(name)_sequences", num(Double(seqs.count))))
            o.append(("\(name)_tokens", num(tokens)))
            for m in s.modes {
                let t = BenchClock.median(runs[m] ?? []), suffix = m == s.mode ? "" : "_\(m.rawValue)"
                let tps = name == "forward" ? "forward_tokens_per_second" : "forward_tokens_per_second_512"
                o.append((tps + suffix, num(tokens / t, 1)))
                o.append(("\(name)_gflops\(suffix)", num(f / t / 1e9, 1)))
            }
        }
        let train = rss["training"] ?? .nan, infer = rss["inference"] ?? .nan
        o += [("peak_rss_mb", num(train, 1)), ("peak_rss_mb_inference", num(infer, 1)),
              ("peak_rss_mb_load", num(rss["load"] ?? .nan, 1)), ("training_over_inference_rss", num(train / infer, 3))]
        var times: [(String, JSONValue)] = variants.enumerated().map { ($1.key, .array(stepTimes[$0].map { num($0, 4) })) }
        for m in s.modes {
            times.append(("forward_\(m.rawValue)", .array((forward[m] ?? []).map { num($0, 4) })))
            times.append(("forward_512_\(m.rawValue)", .array((long[m] ?? []).map { num($0, 4) })))
        }
        o.append(("times", .object(times)))
        return .object(o)
    }

    /// The token ids the benchmark ran, for the comparison scripts to feed other tools.
    static func writeTokens(_ w: BenchWorkload, to path: String) throws {
        let ids: ([Int32]) -> JSONValue = { .array($0.map { .number(Double($0)) }) }
        let labels: [JSONValue] = w.step.map {
            if case .label(let y) = $0.target { return .number(Double(y)) }
            return .null
        }
        let doc = JSONValue.object([("step", .array(w.step.map { ids($0.tokens) })), ("step_labels", .array(labels)),
                                    ("forward", .array(w.forward.map(ids))), ("long", ids(w.long))])
        try BenchText.write(doc.serialized + "\n", to: path)
    }
}

/// A JSON number rounded to `digits` decimals (null when not finite), so output stays readable.
func num(_ x: Double, _ digits: Int = 0) -> JSONValue {
    guard x.isFinite else { return .null }
    var p = 1.0
    for _ in 0..<digits { p *= 10 }
    return .number((x * p).rounded() / p)
}

extension String {
    /// "step_seconds_fp32" → "step_gflops_fp32": the per-variant key of another figure.
    func replacingSeconds(_ with: String) -> String {
        guard hasPrefix("step_seconds") else { return self }
        return "step_" + with + dropFirst("step_seconds".count)
    }
}
