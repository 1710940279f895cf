import CJSONC
import Testing
@testable import PRGE

/// A fixture written by scripts/fixtures/make_token_fixtures.py with llama.cpp's tokenizer.
struct TokenFixture {
    struct Encoding { let input: [UInt8]; let addSpecial: Bool; let parseSpecial: Bool; let ids: [Int32] }
    struct Decoding { let ids: [Int32]; let special: Bool; let bytes: [UInt8] }
    var encodings: [Encoding] = []
    var decodings: [Decoding] = []
    var pieces: [(id: Int32, bytes: [UInt8])] = []
    /// Tokens and merges the fixture's vocabulary has beyond the file's (pre-tokenizer fixtures).
    var extraTokens: [String] = []
    var extraMerges: [String] = []

    init(_ name: String) throws {
        let path = TestSupport.fixtures + "/tokenizer/" + name
        guard let root = json_object_from_file(path) else { throw PRGEError.io("cannot read fixture \(path)") }
        defer { json_object_put(root) }
        for e in Self.items(root, "encode") {
            let input = Self.string(e, "text").map { Array($0.utf8) } ?? Self.hex(Self.string(e, "hex") ?? "")
            encodings.append(Encoding(input: input, addSpecial: Self.bool(e, "add_special"),
                                      parseSpecial: Self.bool(e, "parse_special"), ids: Self.ids(e)))
        }
        for d in Self.items(root, "decode") {
            decodings.append(Decoding(ids: Self.ids(d), special: Self.bool(d, "special"), bytes: Self.hex(Self.string(d, "hex") ?? "")))
        }
        extraTokens = Self.items(root, "extra_tokens").map { String(cString: json_object_get_string($0)) }
        extraMerges = Self.items(root, "extra_merges").map { String(cString: json_object_get_string($0)) }
        for p in Self.items(root, "pieces") {
            var v: OpaquePointer?
            json_object_object_get_ex(p, "id", &v)
            pieces.append((Int32(json_object_get_int(v)), Self.hex(Self.string(p, "hex") ?? "")))
        }
    }

    private static func items(_ o: OpaquePointer, _ key: String) -> [OpaquePointer] {
        var a: OpaquePointer?
        guard json_object_object_get_ex(o, key, &a) != 0, let a else { return [] }
        return (0..<json_object_array_length(a)).compactMap { json_object_array_get_idx(a, $0) }
    }
    private static func string(_ o: OpaquePointer, _ key: String) -> String? {
        var v: OpaquePointer?
        guard json_object_object_get_ex(o, key, &v) != 0, let v, let s = json_object_get_string(v) else { return nil }
        // JSON strings may hold NUL: take the length json-c reports, not the C string.
        let n = Int(json_object_get_string_len(v))
        return String(decoding: UnsafeRawBufferPointer(start: s, count: n), as: UTF8.self)
    }
    private static func bool(_ o: OpaquePointer, _ key: String) -> Bool {
        var v: OpaquePointer?
        return json_object_object_get_ex(o, key, &v) != 0 && json_object_get_boolean(v) != 0
    }
    private static func ids(_ o: OpaquePointer) -> [Int32] { items(o, "ids").map { Int32(json_object_get_int($0)) } }
    static func hex(_ s: String) -> [UInt8] {
        let d = Array(s.utf8).map { UInt8(Character(Unicode.Scalar($0)).hexDigitValue ?? 0) }
        return stride(from: 0, to: d.count - 1, by: 2).map { d[$0] << 4 | d[$0 + 1] }
    }
}

/// Deterministic pseudo-random numbers for the fuzz tests (xorshift64*).
struct TestRNG {
    var state: UInt64
    mutating func next() -> UInt64 {
        state ^= state >> 12; state ^= state << 25; state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

@Suite(.serialized) struct TokenizerTests {
    nonisolated(unsafe) static var cache: [String: Tokenizer] = [:]
    /// In an override: the key is absent from the file.
    static let absent: GGUFValue? = nil

    static func smollm2() throws -> Tokenizer {
        if let t = cache["smollm2"] { return t }
        let t = try Tokenizer(gguf: TestSupport.modelFile())
        cache["smollm2"] = t
        return t
    }

    static func llamaSPM() throws -> Tokenizer {
        if let t = cache["spm"] { return t }
        let t = try Tokenizer(gguf: GGUFFile(path: TestSupport.fixtures + "/tokenizer/ggml-vocab-llama-spm.gguf"))
        cache["spm"] = t
        return t
    }

    /// The reference model's vocabulary with `override` replacing some metadata.
    static func smollm2(_ override: [String: GGUFValue?]) throws -> Tokenizer {
        let f = try TestSupport.modelFile()
        return Tokenizer(vocab: try Vocab(name: "smollm2*") { key in override[key] ?? f[key] })
    }

    /// Checks every encoding of a fixture; reports the first few mismatches in full.
    static func checkEncodings(_ tok: Tokenizer, _ fx: TokenFixture) {
        var bad = 0
        for e in fx.encodings {
            let got = tok.encode(bytes: e.input, addSpecial: e.addSpecial, parseSpecial: e.parseSpecial)
            if got != e.ids {
                bad += 1
                if bad <= 5 {
                    Issue.record("\(String(decoding: e.input, as: UTF8.self).debugDescription) special=\(e.addSpecial)/\(e.parseSpecial): got \(got), llama.cpp \(e.ids)")
                }
            }
        }
        #expect(bad == 0, "\(bad) of \(fx.encodings.count) encodings differ from llama.cpp")
        #expect(fx.encodings.count > 100)
    }

    static func checkDecodings(_ tok: Tokenizer, _ fx: TokenFixture) {
        for d in fx.decodings {
            let got = tok.decodeBytes(d.ids, renderSpecial: d.special)
            #expect(got == d.bytes, "decode of \(d.ids.prefix(20)) special=\(d.special): got \(String(decoding: got, as: UTF8.self).debugDescription)")
        }
        for p in fx.pieces { #expect(tok.piece(p.id) == p.bytes, "piece of \(p.id)") }
        #expect(fx.decodings.count > 100)
    }

    // MARK: llama.cpp parity

    @Test func sharedReferenceTokenizations() throws {
        let tok = try Self.smollm2()
        let path = TestSupport.sharedDir + "/reference/smollm2-135m-q4_1.json"
        let root = try #require(json_object_from_file(path), "cannot read \(path)")
        defer { json_object_put(root) }
        var table: OpaquePointer?, addBOS: OpaquePointer?
        #expect(json_object_object_get_ex(root, "tokenization", &table) != 0)
        #expect(json_object_object_get_ex(root, "add_bos_token", &addBOS) != 0)
        #expect(tok.addsBOS == (json_object_get_boolean(addBOS) != 0))
        var it = json_object_iter_begin(table), end = json_object_iter_end(table)
        var n = 0
        while json_object_iter_equal(&it, &end) == 0 {
            let text = String(cString: json_object_iter_peek_name(&it))
            let value = json_object_iter_peek_value(&it)
            let want = (0..<json_object_array_length(value)).map { Int32(json_object_get_int(json_object_array_get_idx(value, $0))) }
            #expect(tok.encode(text) == want, "\(text.debugDescription)")
            n += 1
            json_object_iter_next(&it)
        }
        #expect(n >= 10)
    }

    @Test func smollm2MatchesLlamaCpp() throws {
        let fx = try TokenFixture("smollm2.json")
        let tok = try Self.smollm2()
        Self.checkEncodings(tok, fx)
        Self.checkDecodings(tok, fx)
        #expect(fx.pieces.count > 1000)
    }

    /// SmolLM2's vocabulary under other pre-tokenizers, with the fixture's extra tokens (such as
    /// multi-digit numbers, which make digit grouping visible in the ids).
    @Test(arguments: ["default", "gpt-2", "llama3", "qwen2", "starcoder", "falcon"])
    func preTokenizersMatchLlamaCpp(pre: String) throws {
        let fx = try TokenFixture("smollm2-pre-\(pre).json")
        let f = try TestSupport.modelFile()
        func appended(_ key: String, _ extra: [GGUFValue]) -> GGUFValue? {
            guard case .array(let t, let a)? = f[key] else { return nil }
            return .array(t, a + extra)
        }
        let tok = try Self.smollm2([
            "tokenizer.ggml.pre": .string(pre),
            "tokenizer.ggml.tokens": appended("tokenizer.ggml.tokens", fx.extraTokens.map { .string($0) }),
            "tokenizer.ggml.token_type": appended("tokenizer.ggml.token_type", fx.extraTokens.map { _ in .int32(1) }),
            "tokenizer.ggml.merges": appended("tokenizer.ggml.merges", fx.extraMerges.map { .string($0) }),
        ])
        #expect(!fx.extraTokens.isEmpty && tok.count == 49152 + fx.extraTokens.count)
        Self.checkEncodings(tok, fx)
        Self.checkDecodings(tok, fx)   // "default" and "gpt-2" clean up spaces when decoding
    }

    @Test func sentencePieceMatchesLlamaCpp() throws {
        let fx = try TokenFixture("llama-spm.json")
        let tok = try Self.llamaSPM()
        #expect(tok.count == 32000 && tok.bos == 1 && tok.eos == 2 && tok.addsBOS && !tok.addsEOS)
        Self.checkEncodings(tok, fx)
        Self.checkDecodings(tok, fx)
        #expect(fx.pieces.count > 1000)
    }

    // MARK: round trips

    @Test func decodeInvertsEncodeOnTheCorpus() throws {
        for (name, tok) in [("smollm2", try Self.smollm2()), ("spm", try Self.llamaSPM())] {
            var n = 0
            for e in try TokenFixture("smollm2.json").encodings where !e.parseSpecial && String(validating: e.input, as: UTF8.self) != nil {
                // Without BOS: llama.cpp drops the SPM space prefix only when no BOS leads.
                let ids = tok.encode(bytes: e.input, addSpecial: false, parseSpecial: e.parseSpecial)
                #expect(tok.decodeBytes(ids, renderSpecial: true) == e.input, "\(name): \(String(decoding: e.input, as: UTF8.self).debugDescription)")
                n += 1
            }
            #expect(n > 1100)
        }
    }

    /// Byte-level BPE loses only what llama.cpp loses: bad UTF-8 bytes become U+FFFD, and the
    /// few bytes that have no token of their own (SmolLM2 lacks some control bytes) vanish.
    @Test func arbitraryBytesNeverTrapAndRoundTripAsRepaired() throws {
        let bpe = try Self.smollm2(), spm = try Self.llamaSPM()
        let hasToken = (0..<256).map { b in
            var ch: [UInt8] = []
            appendUTF8(BytePairEncoder.byteToChar[b], to: &ch)
            return bpe.id(of: String(decoding: ch, as: UTF8.self)) != nil
        }
        #expect(hasToken.filter { $0 }.count > 200)
        var rng = TestRNG(state: 0x9E37_79B9_7F4A_7C15)
        let alphabet: [[UInt8]] = [[0x20], [0x0A], [0x0D], [0x09], [0x27], Array("s".utf8), Array("é".utf8), Array("😀".utf8),
                                   Array("中".utf8), [0xE2, 0x96, 0x81], [0xFF], [0x80], [0xC3], [0xED, 0xA0, 0x80], Array("<|im_end|>".utf8), Array("1".utf8)]
        for round in 0..<400 {
            var bytes: [UInt8] = []
            for _ in 0..<rng.below(120) {
                bytes += round % 2 == 0 ? [UInt8(truncatingIfNeeded: rng.next())] : alphabet[rng.below(alphabet.count)]
            }
            let special = round % 3 == 0
            let ids = bpe.encode(bytes: bytes, addSpecial: true, parseSpecial: special)
            #expect(ids.allSatisfy { $0 >= 0 && Int($0) < bpe.count })
            let repaired = bytes.withUnsafeBufferPointer(decodeCodepoints).reduce(into: [UInt8]()) { appendUTF8($1, to: &$0) }.filter { hasToken[Int($0)] }
            #expect(bpe.decodeBytes(ids, renderSpecial: true) == repaired)
            let sids = spm.encode(bytes: bytes, addSpecial: false, parseSpecial: special)
            #expect(sids.allSatisfy { $0 >= 0 && Int($0) < spm.count })
            _ = spm.decode(sids + [-1, Int32.max, Int32.min, 31999])
        }
    }

    @Test func longInputsStayLinearEnough() throws {
        let tok = try Self.smollm2()
        let word = [UInt8](repeating: UInt8(ascii: "a"), count: 20000)
        let ids = tok.encode(bytes: word + [0x20] + word.map { _ in UInt8(0xFF) })
        #expect(tok.decodeBytes(ids).prefix(20001) == (word + [0x20])[...])
        let sids = try Self.llamaSPM().encode(bytes: [UInt8](repeating: 0x20, count: 20000))
        #expect(!sids.isEmpty)
    }

    // MARK: special tokens

    @Test func specialTokenTextIsPlainUnlessAsked() throws {
        let tok = try Self.smollm2()
        let start = try #require(tok.id(of: "<|im_start|>"))
        let end = try #require(tok.id(of: "<|im_end|>"))
        #expect(start == 1 && end == 2)
        let text = "<|im_start|>user\nHi<|im_end|>"
        let plain = tok.encode(text)
        #expect(!plain.contains(start) && !plain.contains(end))
        #expect(tok.decode(plain) == text)
        let parsed = tok.encode(text, parseSpecial: true)
        #expect(parsed.first == start && parsed.last == end)
        #expect(parsed.count < plain.count)
        #expect(tok.decode(parsed) == "user\nHi", "control tokens are not rendered by default")
        #expect(tok.decode(parsed, renderSpecial: true) == text)
        #expect(tok.piece(start) == Array("<|im_start|>".utf8))
    }

    @Test func spmAddsBOSAndSpacePrefixAsTheFileSays() throws {
        let tok = try Self.llamaSPM()
        let ids = tok.encode("Hello world")
        #expect(ids.first == 1)
        #expect(tok.encode("Hello world", addSpecial: false) == Array(ids.dropFirst()))
        #expect(tok.piece(ids[1])?.first == 0x20, "the first word carries the ▁ prefix")
        #expect(tok.decode(Array(ids.dropFirst())) == "Hello world")
        #expect(tok.encode("", addSpecial: true) == [1])
        #expect(tok.encode("", addSpecial: false).isEmpty)
    }

    @Test func invalidIdsAreSkipped() throws {
        let tok = try Self.smollm2()
        let hello = tok.encode("Hello")
        #expect(tok.decode([-1] + hello + [Int32(tok.count), Int32.max]) == "Hello")
        #expect(tok.piece(-1) == nil && tok.piece(Int32(tok.count)) == nil)
        // A token may hold part of a character: bytes are exact, the String is repaired.
        let smile = tok.encode("😀")
        #expect(smile.count > 1)
        #expect(tok.decodeBytes([smile[0]]).count < 4)
        #expect(tok.decodeBytes(smile) == Array("😀".utf8))
    }

    // MARK: metadata checks

    @Test func malformedMetadataIsRejected() throws {
        func rejects(_ o: [String: GGUFValue?], _ code: PRGEError.Code) {
            do {
                _ = try Self.smollm2(o)
                Issue.record("accepted \(o.keys)")
            } catch let e as PRGEError {
                #expect(e.code == code, "\(e)")
            } catch {
                Issue.record("\(error)")
            }
        }
        rejects(["tokenizer.ggml.tokens": Self.absent], .format)
        rejects(["tokenizer.ggml.tokens": .array(.string, [])], .format)
        rejects(["tokenizer.ggml.tokens": .array(.string, [.string("a"), .string("a")])], .format)
        rejects(["tokenizer.ggml.tokens": .array(.string, [.int32(3)])], .format)
        rejects(["tokenizer.ggml.token_type": .array(.int32, [.int32(1)])], .format)
        rejects(["tokenizer.ggml.token_type": .array(.float32, [])], .format)
        rejects(["tokenizer.ggml.merges": Self.absent], .format)
        rejects(["tokenizer.ggml.add_bos_token": .uint8(1)], .format)
        rejects(["tokenizer.ggml.bos_token_id": .string("1")], .format)
        rejects(["tokenizer.ggml.model": Self.absent], .format)
        rejects(["tokenizer.ggml.model": .string("bert")], .unsupported)
        rejects(["tokenizer.ggml.pre": .string("no-such-pre")], .unsupported)
        // SPM's default BOS is id 1: a one-token vocabulary has none, yet add_bos defaults to true.
        rejects(["tokenizer.ggml.model": .string("llama"), "tokenizer.ggml.tokens": .array(.string, [.string("a")]),
                 "tokenizer.ggml.token_type": .array(.int32, [.int32(1)]), "tokenizer.ggml.scores": Self.absent,
                 "tokenizer.ggml.bos_token_id": Self.absent, "tokenizer.ggml.eos_token_id": Self.absent,
                 "tokenizer.ggml.add_bos_token": Self.absent], .format)
    }

    @Test func overridesFollowTheFile() throws {
        let tok = try Self.smollm2(["tokenizer.ggml.add_bos_token": .bool(true), "tokenizer.ggml.add_eos_token": .bool(true)])
        #expect(tok.encode("Hi") == [1] + tok.encode("Hi", addSpecial: false) + [2])
        // An out-of-range id in the file is ignored for the default (llama.cpp's rule: 11 for BPE).
        let t2 = try Self.smollm2(["tokenizer.ggml.eos_token_id": .uint32(1 << 20)])
        #expect(t2.eos == 11)
    }
}
