import Testing
@testable import PRGE

@Suite struct GGUFReaderTests {
    @Test func readsReferenceModelHeader() throws {
        let f = try TestSupport.modelFile()
        #expect(f.version == 3)
        #expect(try f.string("general.architecture") == "llama")
        #expect(try f.int("llama.block_count") == 30)
        #expect(f.tensors.count == 272)
        let emb = try #require(f.tensor("token_embd.weight"))
        #expect(emb.type == .q8_0)
        #expect(emb.dims == [576, 49152])
        #expect(f["tokenizer.ggml.tokens"]?.array?.count == 49152)
    }
}
