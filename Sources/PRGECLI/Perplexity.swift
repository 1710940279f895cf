import PRGE
#if canImport(Glibc)
import Glibc
#endif

// prge perplexity: llama-perplexity's number for a text file (see Context.perplexity).
let perplexityCommand = Command(
    name: "perplexity",
    summary: "Perplexity of TEXTFILE, chunked as llama.cpp's llama-perplexity does it.",
    options: [Common.model, Option("--ctx", "-c", value: "N", required: true, help: "tokens per chunk (the file needs at least 2·N)"),
              Common.json, Common.threads, Common.mode],
    positionals: ["TEXTFILE"],
    details: """
        The text is tokenized once and cut into chunks of N tokens; each chunk is evaluated on its
        own and only its second half is scored. Readable output shows the running value after each
        chunk ([1]x,[2]y,... on stderr, like llama-perplexity); --json prints {"ppl": x, "chunks": n, "ctx": N}.
        """,
    run: { a in
        let text = try Common.readFile(a.positionals[0])   // before the model: a bad path fails fast
        let ctx = try Common.context(a)
        let n = try a.int("--ctx", default: 0, in: 4...ctx.maxLength)
        let json = a.flag(Common.json.name)
        let t0 = Common.now()
        let r = try ctx.perplexity(tokens: ctx.model.tokenizer.encode(bytes: text), ctx: n) { done, ppl in
            if !json { Common.err("[\(done)]\(ppl),") }
        }
        if json {
            Common.out(JSONValue.object([("ppl", .number(r.ppl)), ("chunks", .number(Double(r.chunks))), ("ctx", .number(Double(r.ctx)))]).serialized + "\n")
        } else {
            Common.err("\n")
            Common.out("perplexity: \(r.ppl) over \(r.chunks) chunks of \(r.ctx) tokens (\(r.scored) tokens scored, \(Int(Common.now() - t0)) s)\n")
        }
        return 0
    })
