// prge_generate: greedy continuation of a prompt (Sources/PRGE/Generate), on the model's Context.
import PRGE

@_cdecl("prge_generate")
public func prge_generate(_ m: OpaquePointer?, _ a: OpaquePointer?, _ prompt: UnsafePointer<CChar>?, _ nPredict: Int32,
                          _ buf: UnsafeMutablePointer<CChar>?, _ size: Int, _ len: UnsafeMutablePointer<Int>?) -> Int32 {
    capi {
        let mh = try model(m)
        let lora = try optionalAdapter(a, for: mh.model)
        let text = try utf8CString(prompt, "prompt")
        guard nPredict >= 0 else { throw PRGEError.invalid("n_predict \(nPredict) is negative") }
        // The output arguments are checked before the (long) generation, not only after it.
        _ = try output(buf, count: size, "output buffer")
        _ = try optional(len, "length pointer")
        let ids = try promptTokens(mh.model, text)
        let c = mh.model.config
        try checkForwardMemory(mh.model, sequences: 1, tokens: ids.count, longest: ids.count, outputs: 1, copies: 1, rank: lora?.config.rank ?? 0,
                               extraBytes: 8 * c.nLayer * c.kvDim * min(ids.count + Int(nPredict), c.nCtxTrain))
        // The generator reports each token's bytes (nothing for control tokens); a character cut
        // by n_predict becomes U+FFFD, so the text out is always valid UTF-8.
        var bytes: [UInt8] = []
        try mh.withContext { ctx in
            try Generator(context: ctx, adapter: lora).generate(prompt: ids, maxTokens: Int(nPredict)) { _, b in
                bytes += b
                return true
            }
        }
        try writeText(String(decoding: bytes, as: UTF8.self), buf, size: size, length: len)
    }
}
