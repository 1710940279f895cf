// SentencePiece-style tokenization (tokenizer.ggml.model = "llama"), as llama.cpp's
// llm_tokenizer_spm_session does it: split the text into UTF-8 characters, then keep merging
// the adjacent pair whose concatenation is the vocabulary token with the highest score (the
// leftmost pair on ties). A character that is in no token comes out as <0xXX> byte tokens.
// The caller has already replaced spaces with "▁" (U+2581), as SentencePiece vocabularies spell them.

struct SentencePieceEncoder {
    private let vocab: Vocab
    /// Token for each byte: "<0xXX>", else the byte's own one-byte token, else <unk>.
    /// (llama.cpp throws where all three are missing; we then emit nothing for the byte.)
    private let byteToken: [Int32?]

    init(vocab: Vocab) {
        self.vocab = vocab
        let hex = Array("0123456789ABCDEF".utf8)
        byteToken = (0..<256).map { b in
            let name: [UInt8] = Array("<0x".utf8) + [hex[b >> 4], hex[b & 15], UInt8(ascii: ">")]
            return vocab.id(of: name) ?? vocab.id(of: [UInt8(b)]) ?? vocab.unk
        }
    }

    private struct Symbol { var start: Int; var count: Int; var prev: Int; var next: Int }
    private struct Bigram { var score: Float; var left: Int; var right: Int; var size: Int }

    /// Bytes in a character, judged from its first byte alone (llama.cpp's unicode_len_utf8):
    /// a stray continuation byte counts as a character of its own.
    private static func charLength(_ lead: UInt8) -> Int {
        switch lead >> 4 {
        case 0xC, 0xD: return 2
        case 0xE: return 3
        case 0xF: return 4
        default: return 1
        }
    }

    func encode(_ text: [UInt8], into out: inout [Int32]) {
        text.withUnsafeBufferPointer { encode($0, into: &out) }
    }

    private func encode(_ text: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        func token(_ start: Int, _ count: Int) -> Int32? {
            vocab.texts.find(UnsafeBufferPointer(rebasing: text[start ..< start + count]))
        }
        var syms: [Symbol] = []
        var offset = 0
        while offset < text.count {
            let n = min(Self.charLength(text[offset]), text.count - offset)
            syms.append(Symbol(start: offset, count: n, prev: syms.count - 1, next: offset + n < text.count ? syms.count + 1 : -1))
            offset += n
        }
        guard !syms.isEmpty else { return }
        var queue = Heap<Bigram> { $0.score > $1.score || ($0.score == $1.score && $0.left < $1.left) }
        func consider(_ l: Int, _ r: Int) {
            guard l >= 0, r >= 0 else { return }
            let size = syms[l].count + syms[r].count
            guard let t = token(syms[l].start, size) else { return }
            queue.push(Bigram(score: vocab.scores[Int(t)], left: l, right: r, size: size))
        }
        for i in 1..<syms.count { consider(i - 1, i) }
        while let b = queue.pop() {
            // Stale: one side was merged away or grew since this pair was queued.
            guard syms[b.left].count > 0, syms[b.right].count > 0, syms[b.left].count + syms[b.right].count == b.size else { continue }
            syms[b.left].count = b.size
            syms[b.right].count = 0
            syms[b.left].next = syms[b.right].next
            if syms[b.right].next >= 0 { syms[syms[b.right].next].prev = b.left }
            consider(syms[b.left].prev, b.left)
            consider(b.left, syms[b.left].next)
        }
        var i = 0
        while i >= 0 {
            let s = syms[i]
            if let t = token(s.start, s.count) {
                out.append(t)
            } else {
                for k in s.start ..< s.start + s.count { if let t = byteToken[Int(text[k])] { out.append(t) } }
            }
            i = s.next
        }
    }
}
