// Text ↔ token ids for a GGUF model, token for token as llama.cpp's llama_tokenize and
// llama_detokenize do it (fixtures in Tests/Fixtures/tokenizer were made with llama.cpp).
//
// Encoding: special-token text is cut out first (control tokens only when parseSpecial; the
// file's user-defined tokens always, as llama.cpp does), then each stretch of plain text goes
// through the model's algorithm: byte-level BPE behind a pre-tokenizer, or SentencePiece-style
// merging. Any byte string is accepted: invalid UTF-8 becomes U+FFFD, as in llama.cpp.
//
// Decoding works on bytes, since one token may hold part of a UTF-8 sequence; `decode`
// returns a String with invalid sequences repaired. Ids outside the vocabulary are skipped.
//
// Where llama.cpp would abort we do something defined instead: a 4-byte sequence above
// U+10FFFF becomes U+FFFD per byte; an SPM byte with no <0xXX> token falls back to <unk> or
// is dropped. Not carried over: llama.cpp's name-based fix-ups of token types (marking texts
// like "<|im_end|>" as control when a file forgot to), per-model lstrip/rstrip attributes
// (phi-3, jina), and the vocab types bert/t5/rwkv. Unknown pre-tokenizer names are refused.

public final class Tokenizer: Sendable {
    let vocab: Vocab
    private let engine: Engine
    /// Control, user-defined and unknown tokens, longest text first: the ones cut out of the
    /// text before tokenizing.
    private let specials: [Int32]

    private enum Engine {
        case bpe(BytePairEncoder, PreTokenizer)
        case spm(SentencePieceEncoder)
    }

    private enum Fragment {
        case text(Range<Int>)
        case token(Int32)
    }

    public convenience init(gguf: GGUFFile) throws {
        try self.init(vocab: Vocab(name: gguf.path) { gguf[$0] })
    }

    init(vocab: Vocab) {
        self.vocab = vocab
        switch vocab.model {
        case .bpe(let pre): engine = .bpe(BytePairEncoder(vocab: vocab, ignoreMerges: pre.ignoreMerges), pre)
        case .spm: engine = .spm(SentencePieceEncoder(vocab: vocab))
        }
        let ids = (0..<Int32(vocab.count)).filter { [.control, .userDefined, .unknown].contains(vocab.types[Int($0)]) }
        specials = ids.sorted { (vocab.text($0).count, $1) > (vocab.text($1).count, $0) }
    }

    /// Tokens in the vocabulary.
    public var count: Int { vocab.count }
    public var bos: Int32? { vocab.bos }
    public var eos: Int32? { vocab.eos }
    /// Whether `encode(addSpecial: true)` adds BOS / EOS (the file's add_bos_token / add_eos_token).
    public var addsBOS: Bool { vocab.addBOS }
    public var addsEOS: Bool { vocab.addEOS }

    /// The id of a token by its text as the file spells it (e.g. "Ġthe" in a byte-level
    /// vocabulary, "▁the" in a SentencePiece one, "<|im_end|>").
    public func id(of piece: String) -> Int32? { vocab.id(of: Array(piece.utf8)) }

    public func encode(_ text: String, addSpecial: Bool = true, parseSpecial: Bool = false) -> [Int32] {
        encode(bytes: Array(text.utf8), addSpecial: addSpecial, parseSpecial: parseSpecial)
    }

    /// `addSpecial`: add BOS/EOS where the file asks for them. `parseSpecial`: text such as
    /// "<|im_start|>" becomes that control token instead of being tokenized as characters.
    public func encode(bytes: [UInt8], addSpecial: Bool = true, parseSpecial: Bool = false) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(bytes.count / 3 + 2)
        if addSpecial && vocab.addBOS, let b = vocab.bos { out.append(b) }
        let fragments = partition(bytes, parseSpecial: parseSpecial)
        switch engine {
        case .bpe(let bpe, let pre): encodeBPE(bytes, fragments, bpe, pre, &out)
        case .spm(let spm): encodeSPM(bytes, fragments, spm, &out)
        }
        if addSpecial && vocab.addEOS, let e = vocab.eos { out.append(e) }
        return out
    }

    private func encodeBPE(_ bytes: [UInt8], _ fragments: [Fragment], _ bpe: BytePairEncoder, _ pre: PreTokenizer, _ out: inout [Int32]) {
        var word: [UInt8] = []
        for f in fragments {
            switch f {
            case .token(let t):
                out.append(t)
            case .text(let r):
                // Words are re-encoded from code points: invalid bytes arrive as U+FFFD.
                let cps = bytes.withUnsafeBufferPointer { decodeCodepoints(UnsafeBufferPointer(rebasing: $0[r])) }
                for w in pre.split(cps) {
                    word.removeAll(keepingCapacity: true)
                    for c in cps[w] { appendUTF8(c, to: &word) }
                    word.withUnsafeBufferPointer { bpe.encode(word: $0, into: &out) }
                }
            }
        }
    }

    private func encodeSPM(_ bytes: [UInt8], _ fragments: [Fragment], _ spm: SentencePieceEncoder, _ out: inout [Int32]) {
        // The space prefix goes on the first stretch of text and on any that follows a special token.
        var afterSpecial = true
        for f in fragments {
            switch f {
            case .token(let t):
                out.append(t)
                afterSpecial = true
            case .text(let r):
                var text: [UInt8] = vocab.addSpacePrefix && afterSpecial ? [0xE2, 0x96, 0x81] : []
                for b in bytes[r] { if b == 0x20 { text += [0xE2, 0x96, 0x81] } else { text.append(b) } }   // ' ' → ▁
                spm.encode(text, into: &out)
                afterSpecial = false
            }
        }
    }

    /// Cuts special-token text out of the input, longest token first, leftmost match first.
    private func partition(_ bytes: [UInt8], parseSpecial: Bool) -> [Fragment] {
        var fragments: [Fragment] = bytes.isEmpty ? [] : [.text(0 ..< bytes.count)]
        for id in specials {
            let type = vocab.types[Int(id)]
            if !parseSpecial && (type == .control || type == .unknown) { continue }
            let pattern = Array(vocab.text(id))
            var next: [Fragment] = []
            for f in fragments {
                guard case .text(var r) = f else { next.append(f); continue }
                while let m = Self.find(pattern, in: bytes, r) {
                    if m > r.lowerBound { next.append(.text(r.lowerBound ..< m)) }
                    next.append(.token(id))
                    r = m + pattern.count ..< r.upperBound
                }
                if !r.isEmpty { next.append(.text(r)) }
            }
            fragments = next
        }
        return fragments
    }

    private static func find(_ pattern: [UInt8], in bytes: [UInt8], _ r: Range<Int>) -> Int? {
        guard let first = pattern.first, pattern.count <= r.count else { return nil }
        var i = r.lowerBound
        while i + pattern.count <= r.upperBound {
            if bytes[i] == first && bytes[i ..< i + pattern.count].elementsEqual(pattern) { return i }
            i += 1
        }
        return nil
    }

    /// The bytes of one token, as llama_token_to_piece(special: true) gives them; nil for an
    /// id outside the vocabulary.
    public func piece(_ id: Int32) -> [UInt8]? {
        vocab.isValid(id) ? pieceBytes(id, renderSpecial: true) : nil
    }

    /// llama_detokenize(remove_special: false, unparse_special: renderSpecial): the pieces
    /// joined, the first one's leading space dropped where the file adds a space prefix, and
    /// spaces before punctuation cleaned where the pre-tokenizer asks for it. Control tokens
    /// render as their text only with renderSpecial. Invalid ids are skipped.
    public func decodeBytes(_ tokens: [Int32], renderSpecial: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        var dropSpace = vocab.addSpacePrefix
        for t in tokens where vocab.isValid(t) {
            let p = pieceBytes(t, renderSpecial: renderSpecial)
            out += dropSpace && p.first == 0x20 ? p.dropFirst() : p[...]
            dropSpace = false
        }
        return vocab.cleanSpaces ? Self.cleanSpaces(out) : out
    }

    /// `decodeBytes` as a String; invalid UTF-8 (say, a cut multi-byte character) becomes U+FFFD.
    public func decode(_ tokens: [Int32], renderSpecial: Bool = false) -> String {
        String(decoding: decodeBytes(tokens, renderSpecial: renderSpecial), as: UTF8.self)
    }

    private func pieceBytes(_ id: Int32, renderSpecial: Bool) -> [UInt8] {
        let text = vocab.text(id)
        switch vocab.types[Int(id)] {
        case .control, .unknown: return renderSpecial ? Array(text) : []
        case .userDefined: return Array(text)
        case .byte: return [Self.byteValue(text)]
        case .normal:
            switch engine {
            case .bpe: return BytePairEncoder.detokenize(text)
            case .spm: return Self.unescapeSpaces(text)
            }
        case .unused, .undefined: return []
        }
    }

    /// "▁" → " ".
    private static func unescapeSpaces(_ text: ArraySlice<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        var i = text.startIndex
        while i < text.endIndex {
            if text[i...].starts(with: [0xE2, 0x96, 0x81]) { out.append(0x20); i += 3 } else { out.append(text[i]); i += 1 }
        }
        return out
    }

    /// The byte of a "<0xXX>" token: the hex digits at offsets 3 and 4, read as far as they go
    /// (llama.cpp's strtol on that substring).
    private static func byteValue(_ text: ArraySlice<UInt8>) -> UInt8 {
        var v: UInt8 = 0
        for c in text.dropFirst(3).prefix(2) {
            guard let d = Character(Unicode.Scalar(c)).hexDigitValue else { break }
            v = v << 4 | UInt8(d)
        }
        return v
    }

    /// llama.cpp's clean_up_tokenization_spaces, three passes in place as it does them:
    /// " ?" " !" " ." " ," lose the space; " ' " loses both; " 's" " 'm" " 're" " 've" lose it.
    static func cleanSpaces(_ input: [UInt8]) -> [UInt8] {
        let space = UInt8(ascii: " "), quote = UInt8(ascii: "'")
        var t = input
        var total = t.count
        // Pass 1: space before ? ! . ,
        var n = total
        total = n > 0 ? 1 : 0
        for i in 1..<max(n, 1) {
            let x = t[i]
            if t[i - 1] == space && "?!.,".utf8.contains(x) { total -= 1 }
            t[total] = x; total += 1
        }
        // Pass 2: a lone apostrophe between spaces
        n = total
        total = n > 0 ? 1 : 0
        var i = 1
        while i < n {
            let x = t[i]
            if x == quote && i + 1 < n && t[i - 1] == space && t[i + 1] == space {
                total -= 1
                i += 1
                t[i] = 0
            }
            t[total] = x; total += 1
            i += 1
        }
        // Pass 3: contractions 's 'm 're 've
        n = total
        total = n > 0 ? 1 : 0
        for i in 1..<max(n, 1) {
            let x = t[i]
            if t[i - 1] == space && x == quote && i + 1 < n {
                let x1 = t[i + 1]
                if x1 == UInt8(ascii: "s") || x1 == UInt8(ascii: "m") {
                    total -= 1
                } else if i + 2 < n && ((x1 == UInt8(ascii: "r") || x1 == UInt8(ascii: "v")) && t[i + 2] == UInt8(ascii: "e")) {
                    total -= 1
                }
            }
            t[total] = x; total += 1
        }
        return Array(t[..<total])
    }
}
