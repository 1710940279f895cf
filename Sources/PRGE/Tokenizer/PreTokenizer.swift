// Pre-tokenizers: split text into words before BPE, so merges never cross a word boundary.
// Each model family defines its split by a list of regexes applied one after the other, every
// regex re-splitting the pieces the previous one left (text between matches stays a piece).
// These are hand-written matchers for the regexes llama.cpp uses, mirroring its custom
// splitters (unicode.cpp) step for step, including where they differ from a real regex engine.

struct PreTokenizer {
    enum Step {
        /// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
        case gpt2
        /// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,maxDigits}
        /// | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+   (llama3: 3 digits, qwen2: 1)
        case llama3(maxDigits: Int)
        /// \p{N}: every number character alone.
        case eachNumber
        /// \p{N}+
        case numberRuns
        /// [0-9][0-9][0-9]
        case asciiDigitTriples
        /// [\p{P}\$\+<=>\^~\|]+, plus ` when `backtick` (falcon).
        case punctuationRuns(backtick: Bool)
    }

    let steps: [Step]
    /// A word that is a whole token is taken as is, without running merges (llama3).
    let ignoreMerges: Bool
    /// Default of add_bos_token when the file does not say.
    let addBOS: Bool
    let cleanSpaces: Bool

    /// The pre-tokenizers llama.cpp names in tokenizer.ggml.pre; nil for one we do not have.
    init?(name: String) {
        switch name {
        case "default":
            self.init([.punctuationRuns(backtick: false), .gpt2, .numberRuns, .asciiDigitTriples])
        case "gpt-2", "phi-2", "mpt", "olmo", "jais", "jina-es", "jina-de", "gigachat", "jina-v2-es",
             "jina-v2-de", "a.x-4.0", "mellum", "modern-bert", "exaone4":
            self.init([.gpt2])
        case "trillion", "granite-docling":
            self.init([.gpt2], cleanSpaces: false)
        case "starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2":
            self.init([.eachNumber, .gpt2])
        case "smollm", "command-r":
            self.init([.eachNumber, .gpt2], cleanSpaces: false)
        case "falcon":
            self.init([.punctuationRuns(backtick: true), .gpt2, .asciiDigitTriples])
        case "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano":
            self.init([.llama3(maxDigits: 3)], ignoreMerges: true, addBOS: true)
        case "dbrx", "smaug-bpe":
            self.init([.llama3(maxDigits: 3)])
        case "stablelm2", "megrez":
            self.init([.llama3(maxDigits: 1)])
        case "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "solar-open":
            self.init([.llama3(maxDigits: 1)], cleanSpaces: false)
        default:
            return nil
        }
    }

    private init(_ steps: [Step], ignoreMerges: Bool = false, addBOS: Bool = false, cleanSpaces: Bool = true) {
        self.steps = steps
        self.ignoreMerges = ignoreMerges
        self.addBOS = addBOS
        self.cleanSpaces = cleanSpaces
    }

    /// The words of `cps`, as ranges of code point indices that tile it in order.
    func split(_ cps: [UInt32]) -> [Range<Int>] {
        let classes = cps.map(CharClass.of)
        var words = cps.isEmpty ? [] : [0 ..< cps.count]
        for step in steps {
            var next: [Range<Int>] = []
            next.reserveCapacity(words.count * 2)
            for w in words {
                let s = Splitter(cps: cps, classes: classes, range: w)
                s.apply(step, into: &next)
            }
            words = next
        }
        return words
    }
}

/// One piece being split by one step. Positions outside `range` read as class [] and code
/// point `nil`, which is how llama.cpp's splitters see the end of a piece.
private struct Splitter {
    let cps: [UInt32]
    let classes: [CharClass]
    let range: Range<Int>

    func cp(_ i: Int) -> UInt32? { range.contains(i) ? cps[i] : nil }
    func cls(_ i: Int) -> CharClass { range.contains(i) ? classes[i] : [] }

    func apply(_ step: PreTokenizer.Step, into out: inout [Range<Int>]) {
        switch step {
        case .gpt2: gpt2(&out)
        case .llama3(let maxDigits): llama3(maxDigits, &out)
        case .eachNumber: isolate(&out) { cls($0).contains(.number) ? 1 : 0 }
        case .numberRuns: isolate(&out) { run(from: $0) { cls($0).contains(.number) } }
        case .asciiDigitTriples: isolate(&out) { i in (0..<3).allSatisfy { isASCIIDigit(cp(i + $0)) } ? 3 : 0 }
        case .punctuationRuns(let backtick): isolate(&out) { run(from: $0) { isPunct($0, backtick) } }
        }
    }

    /// Length of the run of positions from i where `p` holds.
    func run(from i: Int, _ p: (Int) -> Bool) -> Int {
        var j = i
        while p(j) { j += 1 }
        return j - i
    }

    func isASCIIDigit(_ c: UInt32?) -> Bool { c.map { $0 >= 0x30 && $0 <= 0x39 } ?? false }

    func isPunct(_ i: Int, _ backtick: Bool) -> Bool {
        guard let c = cp(i) else { return false }
        if classes[i].contains(.punctuation) { return true }
        switch c {
        case 0x24, 0x2B, 0x3C, 0x3D, 0x3E, 0x5E, 0x7E, 0x7C: return true   // $ + < = > ^ ~ |
        case 0x60: return backtick
        default: return false
        }
    }

    /// A regex's matches and the text between them, as std::regex_iterator walks a piece:
    /// `match(i)` is the length of the match starting at i, 0 for none.
    func isolate(_ out: inout [Range<Int>], _ match: (Int) -> Int) {
        var gap = range.lowerBound, i = range.lowerBound
        while i < range.upperBound {
            let n = match(i)
            guard n > 0 else { i += 1; continue }
            if gap < i { out.append(gap ..< i) }
            out.append(i ..< i + n)
            i += n
            gap = i
        }
        if gap < range.upperBound { out.append(gap ..< range.upperBound) }
    }

    /// 's 't 're 've 'm 'll 'd at i: the length matched, 0 for none.
    func contraction(_ i: Int, caseInsensitive: Bool) -> Int {
        guard cp(i) == 0x27, let c1 = cp(i + 1).map({ caseInsensitive ? lower($0) : $0 }) else { return 0 }
        if c1 == 0x73 || c1 == 0x74 || c1 == 0x6D || c1 == 0x64 { return 2 }   // s t m d
        guard let c2 = cp(i + 2).map({ caseInsensitive ? lower($0) : $0 }) else { return 0 }
        if (c1 == 0x72 && c2 == 0x65) || (c1 == 0x76 && c2 == 0x65) || (c1 == 0x6C && c2 == 0x6C) { return 3 }   // re ve ll
        return 0
    }

    /// ASCII lowercase: no other code point lowercases to the ASCII letters tested above.
    func lower(_ c: UInt32) -> UInt32 { c >= 0x41 && c <= 0x5A ? c + 0x20 : c }

    static let space: UInt32 = 0x20

    func isOther(_ c: CharClass) -> Bool { !c.isEmpty && c.isDisjoint(with: [.whitespace, .letter, .number]) }

    /// llama.cpp's unicode_regex_split_custom_gpt2.
    func gpt2(_ out: inout [Range<Int>]) {
        var start = range.lowerBound, i = start
        func emit(_ end: Int) { if end > start { out.append(start ..< end) }; start = end; i = end }
        while i < range.upperBound {
            let c = cps[i]
            let n = contraction(i, caseInsensitive: false)
            if n > 0 { emit(i + n); continue }
            let skip = c == Self.space ? 1 : 0
            let head = cls(i + skip)   // the class after an optional leading space
            if head.contains(.letter) { emit(i + skip + run(from: i + skip) { cls($0).contains(.letter) }); continue }
            if head.contains(.number) { emit(i + skip + run(from: i + skip) { cls($0).contains(.number) }); continue }
            if isOther(head) { emit(i + skip + run(from: i + skip) { isOther(cls($0)) }); continue }
            let ws = run(from: i) { cls($0).contains(.whitespace) }
            if ws > 1 && cp(i + ws) != nil { emit(i + ws - 1); continue }   // \s+(?!\S): leave one for the next word
            emit(i + max(ws, 1))
        }
    }

    /// llama.cpp's unicode_regex_split_custom_llama3 (and _qwen2 with maxDigits 1).
    func llama3(_ maxDigits: Int, _ out: inout [Range<Int>]) {
        var start = range.lowerBound, i = start
        func emit(_ end: Int) { if end > start { out.append(start ..< end) }; start = end; i = end }
        func isCRLF(_ c: UInt32?) -> Bool { c == 0x0D || c == 0x0A }
        while i < range.upperBound {
            let c = cps[i], k = classes[i]
            let n = contraction(i, caseInsensitive: true)
            if n > 0 { emit(i + n); continue }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !isCRLF(c) && !k.contains(.number) && (k.contains(.letter) || cls(i + 1).contains(.letter)) {
                emit(i + 1 + run(from: i + 1) { cls($0).contains(.letter) })
                continue
            }
            // \p{N}{1,maxDigits}
            if k.contains(.number) {
                let last = i + run(from: i) { cls($0).contains(.number) }
                var end = i
                while end < last { end = min(end + maxDigits, last); emit(end) }
                continue
            }
            // ' '?[^\s\p{L}\p{N}]+[\r\n]*
            let skip = c == Self.space ? 1 : 0
            if isOther(cls(i + skip)) || (skip == 1 && cls(i + 1).isEmpty) {
                var end = i + skip + run(from: i + skip) { isOther(cls($0)) }
                end += run(from: end) { isCRLF(cp($0)) }
                emit(end)
                continue
            }
            // \s*[\r\n]+ | \s+(?!\S) | \s+
            let ws = run(from: i) { cls($0).contains(.whitespace) }
            if let lastCRLF = (i ..< i + ws).last(where: { isCRLF(cps[$0]) }) { emit(lastCRLF + 1); continue }
            if ws > 1 && cp(i + ws) != nil { emit(i + ws - 1); continue }
            emit(i + max(ws, 1))
        }
    }
}
