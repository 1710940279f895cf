// The tokenizer half of a GGUF file's metadata (tokenizer.ggml.*), read and checked once.
// Defaults and overrides follow llama.cpp's llama_vocab::load, so a file means the same thing
// here as there.

/// llama_token_type, as stored in tokenizer.ggml.token_type.
enum TokenType: Int32 {
    case undefined = 0, normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
}

/// The tokenization algorithm, from tokenizer.ggml.model.
enum TokenizerModel {
    /// "gpt2": byte-level BPE after a regex-like pre-tokenizer.
    case bpe(PreTokenizer)
    /// "llama": SentencePiece-style merging by score, with <0xXX> byte fallback.
    case spm
}

struct Vocab {
    let model: TokenizerModel
    /// Token texts as stored in the file (byte-level or ▁-escaped), by id.
    let texts: PieceTable
    let types: [TokenType]
    /// SPM merge priorities (higher merges first); 0 where the file has none.
    let scores: [Float]
    /// BPE merges in rank order: the two halves of "left right".
    let merges: [(left: [UInt8], right: [UInt8])]
    let bos: Int32?
    let eos: Int32?
    let unk: Int32?
    let addBOS: Bool
    let addEOS: Bool
    /// SPM: prefix the text with a space before tokenizing. Both kinds: drop the first
    /// token's leading space when detokenizing.
    let addSpacePrefix: Bool
    /// Detokenizing removes spaces before , . ? ! and in a few contractions.
    let cleanSpaces: Bool

    var count: Int { types.count }

    /// `meta` answers a metadata key (nil if absent); `name` is for error messages.
    init(name: String, meta: (String) -> GGUFValue?) throws {
        func fail(_ m: String) -> PRGEError { .format("\(name): \(m)") }
        func strings(_ v: [GGUFValue], _ key: String) throws -> [[UInt8]] {
            try v.map { guard let s = $0.string else { throw fail("\(key) must be an array of strings") }; return Array(s.utf8) }
        }
        func bool(_ key: String) throws -> Bool? {
            guard let v = meta(key) else { return nil }
            guard let b = v.bool else { throw fail("\(key) must be a bool") }
            return b
        }

        guard let modelName = meta("tokenizer.ggml.model")?.string else { throw fail("missing string metadata tokenizer.ggml.model") }
        guard let tokenValues = meta("tokenizer.ggml.tokens")?.array, !tokenValues.isEmpty else {
            throw fail("tokenizer.ggml.tokens must be a non-empty array of strings")
        }
        let n = tokenValues.count
        guard n < Int(Int32.max) else { throw fail("vocabulary of \(n) tokens is too large") }
        var tokens = try strings(tokenValues, "tokenizer.ggml.tokens")
        for i in tokens.indices where tokens[i].isEmpty { tokens[i] = Array("[EMPTY_\(i)]".utf8) }   // as llama.cpp
        var table = PieceTable(capacity: n)
        for (i, t) in tokens.enumerated() where !table.insert(t).inserted {
            throw fail("token \(i) '\(String(decoding: t, as: UTF8.self))' appears twice in tokenizer.ggml.tokens")
        }
        texts = table
        types = try Self.readTypes(meta("tokenizer.ggml.token_type"), n, fail)
        scores = try Self.readScores(meta("tokenizer.ggml.scores"), n, fail)

        var addBOS: Bool, addEOS = false, addSpacePrefix: Bool
        var bos: Int32?, eos: Int32?, unk: Int32?
        switch modelName {
        case "gpt2":
            let preName = meta("tokenizer.ggml.pre")?.string ?? "default"
            guard let pre = PreTokenizer(name: preName) else { throw PRGEError.unsupported("\(name): pre-tokenizer '\(preName)' is not supported") }
            guard let mv = meta("tokenizer.ggml.merges")?.array else { throw fail("a gpt2 tokenizer needs tokenizer.ggml.merges") }
            merges = try strings(mv, "tokenizer.ggml.merges").map(Self.splitMerge)
            model = .bpe(pre)
            (bos, eos, unk) = (11, 11, nil)   // llama.cpp's defaults for BPE files that name none
            addBOS = pre.addBOS
            addSpacePrefix = false
            cleanSpaces = pre.cleanSpaces
        case "llama":
            merges = []
            model = .spm
            (bos, eos, unk) = (1, 2, 0)
            addBOS = true
            addSpacePrefix = true
            cleanSpaces = false
        default:
            throw PRGEError.unsupported("\(name): tokenizer model '\(modelName)' is not supported (need gpt2 or llama)")
        }
        addSpacePrefix = try bool("tokenizer.ggml.add_space_prefix") ?? addSpacePrefix
        // A default id outside the vocabulary is dropped; a file's id outside it is ignored.
        func special(_ key: String, _ fallback: Int32?) throws -> Int32? {
            let d = fallback.flatMap { Int($0) < n ? $0 : nil }
            guard let v = meta(key) else { return d }
            guard let i = v.int else { throw fail("\(key) must be an integer") }
            return i >= 0 && i < n ? Int32(i) : d
        }
        self.bos = try special("tokenizer.ggml.bos_token_id", bos)
        self.eos = try special("tokenizer.ggml.eos_token_id", eos)
        self.unk = try special("tokenizer.ggml.unknown_token_id", unk)
        addBOS = try bool("tokenizer.ggml.add_bos_token") ?? addBOS
        addEOS = try bool("tokenizer.ggml.add_eos_token") ?? addEOS
        if addBOS && self.bos == nil { throw fail("add_bos_token is set but the file has no BOS token") }
        if addEOS && self.eos == nil { throw fail("add_eos_token is set but the file has no EOS token") }
        self.addBOS = addBOS
        self.addEOS = addEOS
        self.addSpacePrefix = addSpacePrefix
    }

    /// "left right" split at the first space after the first byte (a merge may start with a
    /// space-like byte). A merge without a space becomes ("", ""), which never matches.
    private static func splitMerge(_ m: [UInt8]) -> (left: [UInt8], right: [UInt8]) {
        guard m.count > 1, let sp = m[1...].firstIndex(of: 0x20) else { return ([], []) }
        return (Array(m[..<sp]), Array(m[(sp + 1)...]))
    }

    private static func readTypes(_ v: GGUFValue?, _ n: Int, _ fail: (String) -> PRGEError) throws -> [TokenType] {
        guard let v else { return [TokenType](repeating: .normal, count: n) }
        guard case .array(.int32, let a) = v, a.count >= n else {
            throw fail("tokenizer.ggml.token_type must be an int32 array with one entry per token")
        }
        return a.prefix(n).map { TokenType(rawValue: Int32($0.int ?? 0)) ?? .undefined }
    }

    private static func readScores(_ v: GGUFValue?, _ n: Int, _ fail: (String) -> PRGEError) throws -> [Float] {
        guard let v else { return [Float](repeating: 0, count: n) }
        guard case .array(let t, let a) = v, t == .float32 || t == .int32, a.count >= n else {
            throw fail("tokenizer.ggml.scores must be a float32 or int32 array with one entry per token")
        }
        return a.prefix(n).map { Float($0.double ?? 0) }
    }

    func text(_ id: Int32) -> ArraySlice<UInt8> { texts[id] }
    func id(of text: [UInt8]) -> Int32? { texts.find(text) }
    func isValid(_ id: Int32) -> Bool { id >= 0 && Int(id) < count }
}
