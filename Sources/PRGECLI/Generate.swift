import PRGE
#if canImport(Glibc)
import Glibc
#endif

// prge generate: continue PROMPT, streaming the text as it comes.
let generateCommand = Command(
    name: "generate",
    summary: "Continue PROMPT (greedy by default), with an optional LoRA adapter.",
    options: [Common.model, Option("--adapter", value: "FILE", help: "LoRA adapter (GGUF, llama.cpp layout)"),
              Option("-n", "--tokens", value: "N", help: "most tokens to generate (default 64)"),
              Option("--temp", value: "T", help: "sample at temperature T instead of greedy (0 = greedy)"),
              Option("--top-k", value: "K", help: "with --temp: keep the K most likely tokens (0 = all)"),
              Option("--top-p", value: "P", help: "with --temp: keep the most likely tokens up to probability P"),
              Option("--seed", value: "S", help: "with --temp: seed of the draws (default 0)"),
              Common.threads, Common.mode, Common.parseSpecial],
    positionals: ["PROMPT"],
    details: "Prints PROMPT, then the continuation as it is generated; stops at end of text or after N tokens.\nTiming goes to stderr.",
    run: { a in
        let n = try a.int("-n", default: 64, in: 0...1_000_000)
        let temp = try a.float("--temp", default: 0, in: 0...1000)
        for o in ["--top-k", "--top-p", "--seed"] where temp == 0 && a.string(o) != nil {
            throw UsageError("\(o) applies only when sampling (--temp > 0)")
        }
        let sampling = Sampling(temperature: temp, topK: try a.int("--top-k", default: 0, in: 0...Int(Int32.max)),
                                topP: try a.float("--top-p", default: 1, in: 0.000001...1), seed: try a.uint64("--seed", default: 0))
        let ctx = try Common.context(a)
        let adapter = try a.string("--adapter").map { try AdapterFile.load(path: $0, model: ctx.model.gguf) }
        let prompt = a.positionals[0]
        let ids = ctx.model.tokenizer.encode(prompt, addSpecial: true, parseSpecial: a.flag(Common.parseSpecial.name))
        guard !ids.isEmpty else { throw UsageError("PROMPT has no tokens") }
        Common.write(Array(prompt.utf8))
        let t0 = Common.now()
        let out = try Generator(context: ctx, adapter: adapter).generate(prompt: ids, maxTokens: n, sampling: sampling) { _, bytes in
            Common.write(bytes)
            return true
        }
        let dt = Common.now() - t0
        Common.write([0x0A])
        Common.err("prge: \(ids.count) prompt + \(out.count) generated tokens in \(Int(dt * 1000)) ms\n")
        return 0
    })
