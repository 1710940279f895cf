import PRGE
#if canImport(Glibc)
import Glibc
#endif

// The readable form of `prge bench`: the same figures as --json (read from that object, so the
// two never disagree), laid out as a table with the ratios next to what they compare.

extension BenchResult {
    var table: String {
        guard case .object(let members) = json else { return "" }
        let j = Dictionary(members, uniquingKeysWith: { a, _ in a })
        func v(_ k: String, _ d: Int = 2) -> String { BenchText.fixed(j[k], d) }
        let s = settings, m = s.mode.rawValue
        var rows: [[String]] = [
            ["machine", "\(v("cpu")), \(s.threads) threads, matmul \(v("matmul_path"))",
             "load avg \(v("load_avg_before")) before, \(v("load_avg_after")) after"],
            ["peaks (measured now)", "fp32 FMA \(v("fp32_peak_gflops", 0)) GFLOP/s, bf16 dot \(v("bf16_peak_gflops", 0)) GFLOP/s", "int8 dot \(v("int8_peak_gops", 0)) GOP/s"],
            ["model load (mmap)", "\(v("model_load_seconds", 3)) s", s.model],
            [],
            ["P-RGE step q 4, b 4, r 16, alpha 32, all 7 proj.",
             "\(v("step_rows", 0)) rows (\(v("step_tokens_per_copy", 0)) tokens × 8 copies)",
             "\(v("step_gflop", 1)) GFLOP, median of \(s.steps)"],
        ]
        let names = ["step_seconds": "  \(m) (default)", "step_seconds_fp32": "  fp32 (reference)",
                     "step_seconds_rge": "  sequential RGE, \(m)", "step_seconds_top_half": "  P-RGE, top half of layers, \(m)"]
        let notes = ["step_seconds": "\(v("step_fraction_of_fp32_peak", 3)) of fp32 peak, \(v("step_fraction_of_bf16_peak", 3)) of bf16, \(v("step_fraction_of_int8_peak", 3)) of int8",
                     "step_seconds_fp32": "\(v("fp32_over_default")) × default; \(v("step_fp32_fraction_of_fp32_peak", 3)) of fp32 peak",
                     "step_seconds_rge": "\(v("rge_over_prge")) × P-RGE",
                     "step_seconds_top_half": "P-RGE all layers / this = \(v("top_half_speedup"))"]
        for variant in variants {
            rows.append([names[variant.key] ?? variant.key,
                         "\(v(variant.key, 3)) s   \(v(variant.key.replacingSeconds("gflops"), 0)) GFLOP/s", notes[variant.key] ?? ""])
        }
        rows.append([])
        rows.append(["forward, logits at last tokens", "tokens/s", "GFLOP/s"])
        for md in s.modes {
            let sfx = md == s.mode ? "" : "_\(md.rawValue)"
            rows.append(["  \(v("forward_sequences", 0)) seqs, \(v("forward_tokens", 0)) tokens, \(md.rawValue)",
                         v("forward_tokens_per_second" + sfx, 1), v("forward_gflops" + sfx, 1)])
            rows.append(["  1 seq of 512 tokens, \(md.rawValue)", v("forward_tokens_per_second_512" + sfx, 1), v("forward_512_gflops" + sfx, 1)])
        }
        rows += [[], ["peak RSS (child processes), MiB", "", ""],
                 ["  model loaded only", v("peak_rss_mb_load", 1), ""],
                 ["  inference, the step's 32 sequences", v("peak_rss_mb_inference", 1), ""],
                 ["  training step (peak_rss_mb)", v("peak_rss_mb", 1), "\(v("training_over_inference_rss", 3)) × inference"]]
        return BenchText.layout(rows)
    }
}

enum BenchText {
    /// Left-aligned columns, two spaces apart; an empty row is a blank line.
    static func layout(_ rows: [[String]]) -> String {
        var width: [Int] = []
        for r in rows { for (i, c) in r.enumerated() { if i >= width.count { width.append(0) }; width[i] = max(width[i], c.count) } }
        return rows.map { r in
            r.enumerated().map { i, c in i == r.count - 1 ? c : c + String(repeating: " ", count: width[i] - c.count + 2) }.joined()
        }.joined(separator: "\n") + "\n"
    }

    /// A JSON value for reading: numbers with `digits` decimals, strings as they are.
    static func fixed(_ value: JSONValue?, _ digits: Int) -> String {
        switch value {
        case .number(let x)?:
            var p: Int64 = 1
            for _ in 0..<digits { p *= 10 }
            let n = Int64((abs(x) * Double(p)).rounded())
            let frac = String(n % p)
            let body = digits == 0 ? String(n) : "\(n / p)." + String(repeating: "0", count: digits - frac.count) + frac
            return (x < 0 ? "-" : "") + body
        case .string(let t)?: return t
        default: return "n/a"
        }
    }

    static func write(_ text: String, to path: String) throws {
        guard let f = fopen(path, "wb") else { throw PRGEError.io("cannot create \(path): \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        let n = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
        guard fclose(f) == 0, n == bytes.count else { throw PRGEError.io("cannot write \(path)") }
    }
}
