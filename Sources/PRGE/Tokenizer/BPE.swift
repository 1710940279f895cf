// Byte-level BPE (GPT-2 style), as llama.cpp's llm_tokenizer_bpe_session runs it.
//
// GPT-2 maps every byte to a printable character so token texts are valid UTF-8 ("Ġ" is the
// space byte). That map is a bijection, so instead of re-encoding every word we decode the
// vocabulary and the merges to raw bytes once, and merge raw bytes: the same symbols, the
// same ranks, the same result. Symbols are interned byte strings ("pieces"), so comparing and
// merging them is integer work.

struct BytePairEncoder {
    /// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68
    /// bytes take U+0100 upwards in byte order.
    static let byteToChar: [UInt32] = {
        var map = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            map[b] = printable ? UInt32(b) : next
            if !printable { next += 1 }
        }
        return map
    }()

    static let charToByte: [UInt32: UInt8] = {
        var inverse: [UInt32: UInt8] = [:]
        for (b, c) in byteToChar.enumerated() { inverse[c] = UInt8(b) }
        return inverse
    }()

    private struct Merge { var rank: Int32; var result: Int32 }

    /// Raw byte strings: every decodable token, every byte, every merge operand and result.
    private var pieces = PieceTable()
    /// Token id of each piece, -1 for pieces that are not tokens.
    private var tokenOf: [Int32] = []
    /// (left piece, right piece) → rank and merged piece. The first listing of a pair wins.
    private var merges: [UInt64: Merge] = [:]
    private var bytePiece = [Int32](repeating: 0, count: 256)
    /// What llama.cpp emits for a byte of a final symbol that is not a token: the tokens
    /// spelled by single bytes of the byte's character (in practice: printable ASCII only).
    private var byteFallback = [[Int32]](repeating: [], count: 256)
    private let ignoreMerges: Bool

    init(vocab: Vocab, ignoreMerges: Bool) {
        self.ignoreMerges = ignoreMerges
        pieces = PieceTable(capacity: vocab.count + 2 * vocab.merges.count)
        for id in 0..<Int32(vocab.count) {
            if let raw = Self.rawBytes(vocab.text(id)) { intern(raw, token: id) }
        }
        for b in 0..<256 {
            bytePiece[b] = intern([UInt8(b)])
            var ch: [UInt8] = []
            appendUTF8(Self.byteToChar[b], to: &ch)
            byteFallback[b] = ch.compactMap { vocab.id(of: [$0]) }
        }
        for (rank, m) in vocab.merges.enumerated() {
            guard let l = Self.rawBytes(m.left[...]), let r = Self.rawBytes(m.right[...]) else { continue }
            let key = Self.key(intern(l), intern(r))
            if merges[key] == nil { merges[key] = Merge(rank: Int32(rank), result: intern(l + r)) }
        }
    }

    @discardableResult
    private mutating func intern(_ raw: [UInt8], token: Int32 = -1) -> Int32 {
        let (id, inserted) = pieces.insert(raw)
        if inserted { tokenOf.append(token) }   // tokens come first, and decode to distinct bytes
        return id
    }

    private static func key(_ l: Int32, _ r: Int32) -> UInt64 { UInt64(UInt32(l)) << 32 | UInt64(UInt32(r)) }

    /// The raw bytes a byte-level token text stands for; nil if it has a character outside
    /// the byte map (such a token can never come out of merging bytes).
    static func rawBytes(_ text: ArraySlice<UInt8>) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(text.count)
        for c in Array(text).withUnsafeBufferPointer(decodeCodepoints) {
            guard let b = charToByte[c] else { return nil }
            out.append(b)
        }
        return out
    }

    /// llama.cpp's llama_decode_text: a token's text back to bytes. A character outside the
    /// byte map is spelled out as "[UNK_BYTE_0x<utf8 hex><token text>]", as llama.cpp does.
    static func detokenize(_ text: ArraySlice<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        for c in Array(text).withUnsafeBufferPointer(decodeCodepoints) {
            if let b = charToByte[c] { out.append(b); continue }
            var utf8: [UInt8] = []
            appendUTF8(c, to: &utf8)
            out += Array("[UNK_BYTE_0x".utf8)
            for u in utf8 { out += Array(hex2(u).utf8) }
            out += text
            out.append(0x5D)   // ]
        }
        return out
    }

    private static func hex2(_ b: UInt8) -> String {
        let d = Array("0123456789abcdef".utf8)
        return String(decoding: [d[Int(b >> 4)], d[Int(b & 15)]], as: UTF8.self)
    }

    /// One symbol of a word being merged: a run of the word's bytes, linked to its neighbours.
    private struct Symbol { var piece: Int32; var start: Int32; var count: Int32; var prev: Int32; var next: Int32 }
    private struct Bigram { var rank: Int32; var left: Int32; var right: Int32; var lp: Int32; var rp: Int32; var result: Int32 }

    /// Appends the tokens of one pre-tokenized word (raw bytes).
    func encode(word: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        guard !word.isEmpty else { return }
        if ignoreMerges, let p = pieces.find(word), tokenOf[Int(p)] >= 0 {
            out.append(tokenOf[Int(p)])
            return
        }
        var syms = (0..<word.count).map {
            Symbol(piece: bytePiece[Int(word[$0])], start: Int32($0), count: 1, prev: Int32($0) - 1, next: $0 + 1 < word.count ? Int32($0) + 1 : -1)
        }
        var queue = Heap<Bigram> { $0.rank < $1.rank || ($0.rank == $1.rank && $0.left < $1.left) }
        func consider(_ l: Int32, _ r: Int32) {
            guard l >= 0, r >= 0 else { return }
            let (lp, rp) = (syms[Int(l)].piece, syms[Int(r)].piece)
            if let m = merges[Self.key(lp, rp)] { queue.push(Bigram(rank: m.rank, left: l, right: r, lp: lp, rp: rp, result: m.result)) }
        }
        for i in 1..<Int32(word.count) { consider(i - 1, i) }
        while let b = queue.pop() {
            let (l, r) = (Int(b.left), Int(b.right))
            // Stale: one side was merged away or changed since this pair was queued.
            guard syms[l].count > 0, syms[r].count > 0, syms[l].piece == b.lp, syms[r].piece == b.rp else { continue }
            syms[l].piece = b.result
            syms[l].count += syms[r].count
            syms[r].count = 0
            syms[l].next = syms[r].next
            if syms[r].next >= 0 { syms[Int(syms[r].next)].prev = b.left }
            consider(syms[l].prev, b.left)
            consider(b.left, syms[l].next)
        }
        var i: Int32 = 0
        while i >= 0 {
            let s = syms[Int(i)]
            let t = tokenOf[Int(s.piece)]
            if t >= 0 {
                out.append(t)
            } else {
                for k in s.start ..< s.start + s.count { out += byteFallback[Int(word[Int(k)])] }
            }
            i = s.next
        }
    }
}
