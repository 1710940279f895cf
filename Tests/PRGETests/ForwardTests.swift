import Testing
@testable import PRGE
#if canImport(Glibc)
import Glibc
#endif

/// The exact-f32 forward against llama.cpp on the dequantized-f32 weights: ../shared/reference
/// and Tests/Fixtures/forward (scripts/fixtures/make_forward_fixtures.py), plus the batch
/// contract: ragged batches and outputs only where asked.
@Suite struct ForwardTests {
    /// The issue's bound on |Δlogit| against llama.cpp f32.
    static let tolerance: Float = 2e-3

    /// The reference model, loaded once per test process.
    static let model = Result { try Model(path: TestSupport.modelPath) }
    static func context() throws -> Context { try Context(model: model.get(), threads: 2, mode: .fp32) }

    static func readJSON(_ path: String) throws -> JSONNode {
        guard let f = fopen(path, "rb") else { throw PRGEError.io("cannot open \(path)") }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while case let n = fread(&buf, 1, buf.count, f), n > 0 { bytes += buf[..<n] }
        return JSONNode(try JSONValue.parse(bytes: &bytes, source: path), source: path)
    }

    static func ids(_ n: JSONNode) throws -> [Int32] { try n.array().map { Int32(try $0.int()) } }

    /// Every (sequence, position) of `seqs`, in order.
    static func allPositions(_ seqs: [[Int32]]) -> [(seq: Int, pos: Int)] {
        seqs.indices.flatMap { s in seqs[s].indices.map { (seq: s, pos: $0) } }
    }

    // MARK: llama.cpp parity

    @Test func sharedReferenceLogits() throws {
        let ctx = try Self.context()
        let v = ctx.model.config.nVocab
        let root = try Self.readJSON(TestSupport.sharedDir + "/reference/smollm2-135m-q4_1.json")
        var worst: Float = 0, compared = 0
        for (text, r) in try root.require("logits_dequantized_f32").object() {
            let tokens = try Self.ids(r.require("tokens"))
            #expect(ctx.model.tokenizer.encode(text) == tokens, "\(text)")
            let logits = try ctx.logits(Batch(sequences: [tokens], outputs: Self.allPositions([tokens])))   // [n, v]
            func check(_ pos: Int, _ id: Int, _ want: Float) {
                worst = max(worst, abs(logits[pos * v + id] - want))
                compared += 1
            }
            let perPosition = try r.require("per_position_top5").array()
            #expect(perPosition.count == tokens.count)
            for (p, top5) in perPosition.enumerated() {
                for pair in try top5.array() { try check(p, pair.array()[0].int(), pair.array()[1].float()) }
            }
            let last = tokens.count - 1
            for pair in try r.require("top10").array() { try check(last, pair.array()[0].int(), pair.array()[1].float()) }
            // Full-vocabulary log-softmax at the last position, in double as the reference.
            let row = logits[last * v ..< (last + 1) * v]
            let mx = row.max()!
            let lse = Double(mx) + log(row.reduce(0.0) { $0 + exp(Double($1 - mx)) })
            #expect(abs(lse - (try r.require("logsumexp").double())) <= Double(Self.tolerance), "\(text): logsumexp")
            for (id, want) in try r.require("logsoftmax").object() {
                let got = Double(row[row.startIndex + Int(id)!]) - lse
                worst = max(worst, Float(abs(got - (try want.double()))))
                compared += 1
            }
            let argmax = row.indices.max { row[$0] < row[$1] }! - row.startIndex
            #expect(argmax == (try r.require("top10").array()[0].array()[0].int()), "\(text): top-1")
        }
        print("ForwardTests: max |Δlogit| vs ../shared/reference logits_dequantized_f32 = \(worst) over \(compared) values")
        #expect(compared > 100)
        #expect(worst <= Self.tolerance)
    }

    /// Prompts the shared reference does not have (a 220-token text, an SST-2 prompt, chat
    /// markers, code, multilingual text, a single token), all in one ragged batch. Logits are
    /// compared at every position for the fixture's top 10 and fixed ids.
    @Test func independentFixtureLogits() throws {
        let ctx = try Self.context()
        let root = try Self.readJSON(TestSupport.fixtures + "/forward/smollm2-f32.json")
        let fixed = try Self.ids(root.require("fixed_ids"))
        let prompts = try root.require("prompts").array()
        #expect(prompts.count >= 6)
        var seqs: [[Int32]] = [], wanted: [[(id: Int32, logit: Float)]] = []   // wanted: per output row
        for pr in prompts {
            let tokens = try Self.ids(pr.require("tokens"))
            let special = try pr.require("parse_special").bool()
            let text = try pr.require("text").string()
            #expect(ctx.model.tokenizer.encode(text, parseSpecial: special) == tokens)
            seqs.append(tokens)
            for pos in try pr.require("positions").array() {
                var w = try pos.require("top").array().map { (id: Int32(try $0.array()[0].int()), logit: try $0.array()[1].float()) }
                let fixedLogits = try pos.require("fixed").array().map { try $0.float() }
                w += zip(fixed, fixedLogits).map { (id: $0, logit: $1) }
                wanted.append(w)
            }
        }
        let ids = Array(Set(wanted.joined().map(\.id))).sorted()
        let column = Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($1, $0) })
        let outputs = Self.allPositions(seqs)
        #expect(outputs.count == wanted.count)
        let logits = try ctx.logits(Batch(sequences: seqs, outputs: outputs), ids: ids)   // [outputs, ids]
        var worst: Float = 0
        for (row, w) in wanted.enumerated() {
            for (id, want) in w { worst = max(worst, abs(logits[row * ids.count + column[id]!] - want)) }
        }
        print("ForwardTests: max |Δlogit| vs Tests/Fixtures/forward (llama.cpp f32) = \(worst) over \(outputs.count) positions")
        #expect(worst <= Self.tolerance)

        // The full vocabulary at each prompt's last position: the same top-1 as llama.cpp.
        let full = try ctx.logits(Batch(lastTokenOf: seqs))
        let v = ctx.model.config.nVocab
        for (s, pr) in prompts.enumerated() {
            let top = try pr.require("positions").array().last!.require("top").array()
            let want = try top[0].array()[0].int(), runnerUp = try top[1].array()[1].float()
            let mine = full[s * v ..< (s + 1) * v]
            let argmax = mine.indices.max { mine[$0] < mine[$1] }! - mine.startIndex
            // A near-tie may swap, nothing else.
            let name = try pr.require("name").string()
            #expect(argmax == want || abs(mine[mine.startIndex + argmax] - runnerUp) <= 2 * Self.tolerance, "\(name)")
        }
    }

    /// Linear RoPE scaling and Llama 3.1-style per-frequency divisors (rope_freqs.weight), computed
    /// as llama.cpp does: the reference model plus llama.rope.scaling.type = linear, its factor and
    /// that tensor (written here by GGUFWriter, from the values the fixture records) against
    /// llama.cpp's logits on the same variant (scripts/fixtures/make_rope_fixture.py). The plain
    /// model's logits must be far from them, so the check cannot pass with the scaling ignored.
    @Test func ropeScalingMatchesLlamaCpp() throws {
        let root = try Self.readJSON(TestSupport.fixtures + "/forward/smollm2-rope-scaling.json")
        let factors = try root.require("freq_factors").array().map { try $0.float() }
        let src = try TestSupport.modelFile()
        var w = GGUFWriter()
        for (key, value) in src.metadata where !key.hasPrefix("llama.rope.scaling") { w.add(key, value) }
        w.add("llama.rope.scaling.type", .string("linear"))
        w.add("llama.rope.scaling.factor", .float32(try root.require("rope_scaling_factor").float()))
        for t in src.tensors { try w.addTensor(name: t.name, dims: t.dims, type: t.type, data: Array(src.data(t))) }
        try w.addTensor(name: "rope_freqs.weight", dims: [factors.count], floats: factors)
        let path = "/tmp/prge-rope-variant-\(getpid()).gguf"
        defer { unlink(path) }
        try w.write(to: path)
        let variant = try Context(model: Model(path: path), threads: 2, mode: .fp32)
        let plain = try Self.context()

        for pr in try root.require("prompts").array() {
            let tokens = try Self.ids(pr.require("tokens"))
            let positions = try pr.require("positions").array()
            let pos = try positions.map { try $0.require("pos").int() }
            let want = try positions.map { try $0.require("top").array().map { (id: Int32(try $0.array()[0].int()), logit: try $0.array()[1].float()) } }
            let ids = Array(Set(want.joined().map(\.id))).sorted()
            let column = Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($1, $0) })
            let batch = Batch(sequences: [tokens], outputs: pos.map { (seq: 0, pos: $0) })
            let got = try variant.logits(batch, ids: ids), base = try plain.logits(batch, ids: ids)
            var worst: Float = 0, moved: Float = 0
            for (row, wr) in want.enumerated() {
                for (id, v) in wr {
                    worst = max(worst, abs(got[row * ids.count + column[id]!] - v))
                    moved = max(moved, abs(base[row * ids.count + column[id]!] - v))
                }
            }
            let name = try pr.require("name").string()
            print("ForwardTests: RoPE scaling, \(name): max |Δlogit| vs llama.cpp = \(worst) (unscaled model: \(moved))")
            #expect(worst <= Self.tolerance, "\(name)")
            #expect(moved > 100 * Self.tolerance, "\(name): the scaling does not change llama.cpp's logits here")
        }
    }

    /// Unknown RoPE scalings are refused, not computed as something else.
    @Test func unknownRopeScalingIsRefused() throws {
        let src = try TestSupport.modelFile()
        var w = GGUFWriter()
        for (key, value) in src.metadata where !key.hasPrefix("llama.rope.scaling") { w.add(key, value) }
        w.add("llama.rope.scaling.type", .string("yarn"))
        for t in src.tensors { try w.addTensor(name: t.name, dims: t.dims, type: t.type, data: Array(src.data(t))) }
        let path = "/tmp/prge-rope-yarn-\(getpid()).gguf"
        defer { unlink(path) }
        try w.write(to: path)
        do {
            _ = try Model(path: path)
            Issue.record("a yarn-scaled model loaded")
        } catch {
            #expect("\(error)".contains("RoPE scaling 'yarn' is not supported"), "\(error)")
        }
    }

    // MARK: the batch contract

    /// Sequences of different lengths in one call give each sequence's logits alone.
    @Test func raggedBatchMatchesSingleSequences() throws {
        let ctx = try Self.context()
        let seqs: [[Int32]] = [[504, 3575, 282, 4649, 314], [19556], [7042, 28, 198, 504, 3575, 282, 1109, 253]]
        let v = ctx.model.config.nVocab
        let together = try ctx.logits(Batch(sequences: seqs, outputs: Self.allPositions(seqs)))
        var row = 0, worst: Float = 0
        for s in seqs {
            let alone = try ctx.logits(Batch(sequences: [s], outputs: Self.allPositions([s])))
            for i in alone.indices { worst = max(worst, abs(alone[i] - together[row * v + i])) }
            row += s.count
        }
        #expect(row * v == together.count)
        #expect(worst <= 1e-4, "max |Δ| ragged vs alone = \(worst)")
    }

    /// Logits come back only for the requested (sequence, position) pairs, in request order.
    @Test func outputsOnlyAtRequestedPositions() throws {
        let ctx = try Self.context()
        let seqs: [[Int32]] = [[504, 3575, 282, 4649, 314], [7042, 28, 198]]
        let v = ctx.model.config.nVocab
        let all = try ctx.logits(Batch(sequences: seqs, outputs: Self.allPositions(seqs)))
        let asked = [(seq: 1, pos: 2), (seq: 0, pos: 0), (seq: 0, pos: 4), (seq: 1, pos: 0)]
        let some = try ctx.logits(Batch(sequences: seqs, outputs: asked))
        #expect(some.count == asked.count * v)
        for (i, o) in asked.enumerated() {
            let r = (o.seq == 0 ? 0 : seqs[0].count) + o.pos
            #expect(some[i * v ..< (i + 1) * v].elementsEqual(all[r * v ..< (r + 1) * v]), "output \(i)")
        }
        #expect(try ctx.logits(Batch(sequences: seqs, outputs: [])).isEmpty)
        #expect(throws: PRGEError.self) { try ctx.logits(Batch(sequences: seqs, outputs: [(seq: 1, pos: 3)])) }
        #expect(throws: PRGEError.self) { try ctx.logits(Batch(sequences: seqs, outputs: [(seq: 2, pos: 0)])) }
    }
}
