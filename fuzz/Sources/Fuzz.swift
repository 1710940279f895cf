// libFuzzer entry points for prge's parsers. Compiled into the same module as Sources/PRGE
// (fuzz/build.sh), so internal entry points (Vocab, Dataset.parseJSONL, LayerWeights) are
// reachable without widening the library's public API.
//
// One binary, several targets; PRGE_FUZZ_TARGET picks one:
//   gguf       arbitrary bytes -> GGUFFile(bytes:); on what parses: LlamaConfig, Tokenizer (plus
//              a short encode/decode), every layer's weights, the embeddings, and the LoRA
//              adapter reader against a 1-layer shape table.
//   tokenizer  byte 0 picks one of the loaded tokenizers and the add/parse-special flags; the
//              rest is text to encode (then decoded again) and, read as int32s, ids to decode.
//   config     arbitrary bytes -> JSONValue.parse(bytes:); valid UTF-8 -> TrainConfig.parse,
//              and the parsed config written back out must parse again to the same JSON.
//   jsonl      byte 0 picks a task, byte 1 a max_length; the rest is JSONL text -> rows ->
//              examples -> token samples (Objective.sample with the reference tokenizer).
// PRGE_FUZZ_SEEDS=DIR writes generated seeds (a tiny llama GGUF, an adapter) into DIR and exits.
#if canImport(Glibc)
import Glibc
#endif

enum FuzzTarget: String { case gguf, tokenizer, config, jsonl }

nonisolated(unsafe) var fuzzTarget = FuzzTarget.gguf
nonisolated(unsafe) var tokenizers: [Tokenizer] = []
nonisolated(unsafe) var bpeRoundTrip: Set<Int> = []          // tokenizers whose decode(encode(x)) == x
/// Bytes whose GPT-2 character is not a token of the reference vocabulary (SmolLM2 lacks 21:
/// 0x04 0x06 0x13 0x14 0x16 0x1D 0xC0 0xC1 0xF1 0xF2 0xF5-0xFF). Encoding drops them, exactly as
/// llama.cpp does, so the round trip only holds for text without them.
nonisolated(unsafe) var unencodable = [Bool](repeating: false, count: 256)
nonisolated(unsafe) var jsonlTasks: [Task] = []
nonisolated(unsafe) var objectives: [Objective?] = []

func env(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }

func die(_ message: String) -> Never {
    fputs("prge-fuzz: \(message)\n", stderr)
    exit(2)
}

/// Root of the repository (the working directory by default: run.sh runs from there).
var repoRoot: String { env("PRGE_REPO") ?? "." }
var modelPath: String { env("PRGE_MODEL") ?? repoRoot + "/models/SmolLM2-135M-Instruct.Q4_1.gguf" }

/// The reference model's tokenizer with tokenizer.ggml.pre replaced (the fixtures' variants).
func tokenizer(_ f: GGUFFile, pre: String?) throws -> Tokenizer {
    try Tokenizer(vocab: Vocab(name: f.path) { key in
        if key == "tokenizer.ggml.pre", let pre { return .string(pre) }
        return f[key]
    })
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> Int32 {
    if let dir = env("PRGE_FUZZ_SEEDS") {
        do { try writeSeeds(dir) } catch { die("writing seeds: \(error)") }
        exit(0)
    }
    guard let name = env("PRGE_FUZZ_TARGET"), let t = FuzzTarget(rawValue: name) else {
        die("set PRGE_FUZZ_TARGET to one of gguf, tokenizer, config, jsonl")
    }
    fuzzTarget = t
    do {
        switch t {
        case .tokenizer, .jsonl:
            // Loaded once: the reference model's byte-level BPE vocabulary (49152 tokens) under
            // several pre-tokenizers, and the SentencePiece fixture vocabulary.
            let model = try GGUFFile(path: modelPath)
            tokenizers.append(try tokenizer(model, pre: nil))
            bpeRoundTrip.insert(0)
            for b in 0..<256 {
                var ch: [UInt8] = []
                appendUTF8(BytePairEncoder.byteToChar[b], to: &ch)
                unencodable[b] = tokenizers[0].vocab.id(of: ch) == nil
            }
            if t == .tokenizer {
                for pre in ["default", "gpt-2", "llama3", "qwen2", "falcon", "starcoder", "stablelm2"] {
                    tokenizers.append(try tokenizer(model, pre: pre))
                }
                let spm = try GGUFFile(path: repoRoot + "/Tests/Fixtures/tokenizer/ggml-vocab-llama-spm.gguf")
                tokenizers.append(try Tokenizer(gguf: spm))
            } else {
                let custom = try Task.from(json: JSONNode(try JSONValue.parse(
                    #"{"template": "Q: {question|capitalize} {a.b} [{c}]", "labels": [" yes", " no", " maybe"], "label_field": "l", "label_values": ["y", "n", 2]}"#)))
                jsonlTasks = try Task.builtinNames.map(Task.named) + [Task.promptResponse, custom]
                objectives = jsonlTasks.map { task in
                    try? Objective(task: task, loss: task.kind == .classification ? .candidates : .full, tokenizer: tokenizers[0])
                }
            }
        case .gguf, .config:
            break
        }
    } catch {
        die("setup of target \(name): \(error) (is \(modelPath) there? PRGE_MODEL overrides)")
    }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size)
    switch fuzzTarget {
    case .gguf: fuzzGGUF(bytes)
    case .tokenizer: fuzzTokenizer(bytes)
    case .config: fuzzConfig(bytes)
    case .jsonl: fuzzJSONL(bytes)
    }
    return 0
}

// ---- gguf --------------------------------------------------------------------------------

func fuzzGGUF(_ bytes: UnsafeRawBufferPointer) {
    // GGUFFile(bytes:) does not copy: the buffer outlives every use below.
    guard let f = try? GGUFFile(bytes: bytes, name: "fuzz.gguf") else { return }
    for t in f.tensors { _ = f.data(t).count }
    for (k, _) in f.metadata.prefix(64) { _ = f[k]; _ = try? f.int(k); _ = try? f.double(k); _ = try? f.string(k) }

    if let tok = try? Tokenizer(gguf: f) {
        let ids = tok.encode("Hello, world! 123 <s> ▁x", addSpecial: true, parseSpecial: true)
        _ = tok.decode(ids, renderSpecial: true)
        _ = tok.decode([0, 1, 2, Int32(tok.count - 1), Int32(tok.count), -1])
        _ = tok.piece(0)
    }
    if let c = try? LlamaConfig(gguf: f) {
        // What Model.init(path:) builds from the file, minus the file mapping.
        for i in 0..<c.nLayer { guard (try? LayerWeights(f, c, layer: i)) != nil else { break } }
        if let e = try? QMatrix(f, "token_embd.weight", rows: c.nVocab, cols: c.nEmbd) {
            var row = [Float](repeating: 0, count: e.cols)
            row.withUnsafeMutableBufferPointer { e.dequantizeRow(e.rows - 1, into: $0.baseAddress!) }
        }
        _ = try? loadVector(f, "output_norm.weight", count: c.nEmbd)
    }
    // The adapter reader: every llama layer 0 projection as 64 x 64 (the fuzzed file may
    // claim anything).
    _ = try? AdapterFile.load(f, architecture: "llama", nLayer: 2) { layer, _ in layer < 2 ? (64, 64) : nil }
}

// ---- tokenizer ---------------------------------------------------------------------------

func fuzzTokenizer(_ bytes: UnsafeRawBufferPointer) {
    guard let selector = bytes.first else { return }
    let which = Int(selector >> 2) % tokenizers.count
    let tok = tokenizers[which]
    let addSpecial = selector & 1 != 0, parseSpecial = selector & 2 != 0
    let text = Array(bytes.dropFirst())
    let ids = tok.encode(bytes: text, addSpecial: addSpecial, parseSpecial: parseSpecial)
    for id in ids where !(0..<Int32(tok.count)).contains(id) {
        fatalError("encode gave id \(id) outside the vocabulary of \(tok.count)")
    }
    let back = tok.decodeBytes(ids, renderSpecial: true)
    // Byte-level BPE loses nothing: with no special parsing and no BOS/EOS, valid UTF-8 comes
    // back byte for byte (the reference vocabulary keeps spaces as they are), but for the bytes
    // the vocabulary has no token for.
    if bpeRoundTrip.contains(which), !addSpecial, !parseSpecial, String(validating: text, as: UTF8.self) != nil,
       !text.contains(where: { unencodable[Int($0)] }), back != text {
        fatalError("BPE round trip: \(text) -> \(ids) -> \(back)")
    }
    _ = tok.decode(ids, renderSpecial: false)
    // The same bytes as arbitrary ids (most out of range: skipped, never a trap).
    var raw: [Int32] = []
    var i = 1
    while i + 4 <= bytes.count {
        raw.append(Int32(bitPattern: UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24) % Int32(tok.count + 8))
        i += 4
    }
    _ = tok.decodeBytes(raw, renderSpecial: selector & 1 != 0)
    for id in raw.prefix(8) { _ = tok.piece(id) }
}

// ---- config ------------------------------------------------------------------------------

func fuzzConfig(_ bytes: UnsafeRawBufferPointer) {
    var b = Array(bytes)
    _ = try? JSONValue.parse(bytes: &b, source: "fuzz")
    guard let text = String(validating: bytes, as: UTF8.self) else { return }
    guard let c = try? TrainConfig.parse(text, source: "fuzz") else { return }
    // TrainConfig.json is documented as parseable by parse: the round trip must hold.
    let out = c.json.serialized
    do {
        let again = try TrainConfig.parse(out, source: "round trip")
        guard again.json == c.json else { fatalError("config round trip changed: \(out) -> \(again.json.serialized)") }
    } catch {
        fatalError("config written back does not parse: \(out): \(error)")
    }
}

// ---- jsonl -------------------------------------------------------------------------------

func fuzzJSONL(_ bytes: UnsafeRawBufferPointer) {
    guard bytes.count >= 2 else { return }
    let which = Int(bytes[0]) % jsonlTasks.count
    let maxLength = 2 + Int(bytes[1])
    let task = jsonlTasks[which]
    guard let rows = try? Dataset.parseJSONL(Array(bytes.dropFirst(2)), source: "fuzz") else { return }
    for row in rows {
        _ = try? task.examples(from: row, requireLabel: false)
        _ = try? task.examples(from: row, requireLabel: true)
    }
    if let objective = objectives[which],
       let samples = try? Evaluation.samples(rows: rows, objective: objective, maxLength: maxLength) {
        for s in samples where s.tokens.count > maxLength || s.tokens.isEmpty {
            fatalError("sample of \(s.tokens.count) tokens with max_length \(maxLength)")
        }
    }
}

// ---- seeds -------------------------------------------------------------------------------

/// A complete tiny llama model (1 layer, d 32, 2 heads, ff 64, byte-level vocabulary of 260
/// tokens) and a LoRA adapter for layer 0: seeds that get past the header into the model and
/// adapter builders.
func writeSeeds(_ dir: String) throws {
    let d = 32, ff = 64
    var w = GGUFWriter()
    w.add("general.architecture", .string("llama"))
    w.add("general.name", .string("fuzz-tiny"))
    w.add("llama.block_count", .uint32(1))
    w.add("llama.context_length", .uint32(64))
    w.add("llama.embedding_length", .uint32(UInt32(d)))
    w.add("llama.feed_forward_length", .uint32(UInt32(ff)))
    w.add("llama.attention.head_count", .uint32(2))
    w.add("llama.attention.head_count_kv", .uint32(1))
    w.add("llama.attention.layer_norm_rms_epsilon", .float32(1e-5))
    w.add("llama.rope.freq_base", .float32(10000))
    // Byte-level BPE: the 256 byte characters, three merges, two control tokens.
    var tokens: [GGUFValue] = (0..<256).map { b in
        var ch: [UInt8] = []
        appendUTF8(BytePairEncoder.byteToChar[b], to: &ch)
        return .string(String(decoding: ch, as: UTF8.self))
    }
    tokens += [.string("Ġt"), .string("he"), .string("<|im_start|>"), .string("<|im_end|>")]
    var types = [GGUFValue](repeating: .int32(1), count: 258)
    types += [.int32(3), .int32(3)]
    w.add("tokenizer.ggml.model", .string("gpt2"))
    w.add("tokenizer.ggml.pre", .string("smollm"))
    w.add("tokenizer.ggml.tokens", .array(.string, tokens))
    w.add("tokenizer.ggml.token_type", .array(.int32, types))
    w.add("tokenizer.ggml.merges", .array(.string, [.string("Ġ t"), .string("h e")]))
    w.add("tokenizer.ggml.bos_token_id", .uint32(258))
    w.add("tokenizer.ggml.eos_token_id", .uint32(259))
    let nv = tokens.count
    func q40(_ rows: Int, _ cols: Int) -> [UInt8] { [UInt8](repeating: 0x11, count: rows * cols / 32 * 18) }
    try w.addTensor(name: "token_embd.weight", dims: [d, nv], type: .q4_0, data: q40(nv, d))
    try w.addTensor(name: "output_norm.weight", dims: [d], floats: [Float](repeating: 1, count: d))
    try w.addTensor(name: "blk.0.attn_norm.weight", dims: [d], floats: [Float](repeating: 1, count: d))
    try w.addTensor(name: "blk.0.ffn_norm.weight", dims: [d], floats: [Float](repeating: 1, count: d))
    try w.addTensor(name: "blk.0.attn_q.weight", dims: [d, d], type: .q8_0, data: [UInt8](repeating: 1, count: d * d / 32 * 34))
    try w.addTensor(name: "blk.0.attn_k.weight", dims: [d, 16], type: .q4_1, data: [UInt8](repeating: 2, count: 16 * d / 32 * 20))
    try w.addTensor(name: "blk.0.attn_v.weight", dims: [d, 16], type: .f16, data: [UInt8](repeating: 0, count: 16 * d * 2))
    try w.addTensor(name: "blk.0.attn_output.weight", dims: [d, d], type: .q4_0, data: q40(d, d))
    try w.addTensor(name: "blk.0.ffn_gate.weight", dims: [d, ff], type: .q4_0, data: q40(ff, d))
    try w.addTensor(name: "blk.0.ffn_up.weight", dims: [d, ff], type: .q4_0, data: q40(ff, d))
    try w.addTensor(name: "blk.0.ffn_down.weight", dims: [ff, d], type: .q4_0, data: q40(d, ff))
    try w.write(to: dir + "/tiny-llama.gguf")
    // Sanity: the seed must load as a model.
    let f = try GGUFFile(path: dir + "/tiny-llama.gguf")
    let c = try LlamaConfig(gguf: f)
    _ = try LayerWeights(f, c, layer: 0)
    _ = try Tokenizer(gguf: f)

    var a = GGUFWriter()
    a.add("general.architecture", .string("llama"))
    a.add("general.type", .string("adapter"))
    a.add("adapter.type", .string("lora"))
    a.add("adapter.lora.alpha", .float32(8))
    try a.addTensor(name: "blk.0.attn_q.weight.lora_a", dims: [64, 2], floats: (0..<128).map { Float($0) / 128 })
    try a.addTensor(name: "blk.0.attn_q.weight.lora_b", dims: [2, 64], floats: (0..<128).map { Float($0) / -64 })
    try a.write(to: dir + "/adapter.gguf")
}
