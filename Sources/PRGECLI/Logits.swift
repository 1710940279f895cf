import PRGE

// prge logits: the top-K next-token logits after TEXT.
let logitsCommand = Command(
    name: "logits",
    summary: "Print the K largest logits at the last position of TEXT.",
    options: [Common.model, Option("--top", "-k", value: "K", required: true, help: "how many logits (1 to n_vocab)"),
              Common.json, Common.mode, Common.threads, Common.parseSpecial],
    positionals: ["TEXT"],
    details: "--json prints {\"tokens\": [id, ...], \"top\": [[id, logit], ...]}, largest first.",
    run: { a in
        let ctx = try Common.context(a)
        let tok = ctx.model.tokenizer
        let k = try a.int("--top", default: 1, in: 1...ctx.model.config.nVocab)
        let ids = tok.encode(a.positionals[0], addSpecial: true, parseSpecial: a.flag(Common.parseSpecial.name))
        guard !ids.isEmpty else { throw UsageError("TEXT has no tokens") }
        let logits = try ctx.logits(Batch(lastTokenOf: [ids]))          // [n_vocab]
        // Largest first; equal logits by id, so the output is reproducible.
        let top = logits.indices.sorted { logits[$0] != logits[$1] ? logits[$0] > logits[$1] : $0 < $1 }.prefix(k)
        if a.flag(Common.json.name) {
            let json = JSONValue.object([
                ("tokens", .array(ids.map { .number(Double($0)) })),
                ("top", .array(top.map { .array([.number(Double($0)), .float(logits[$0])]) })),
            ])
            Common.out(json.serialized + "\n")
        } else {
            Common.out("tokens: \(ids)\n")
            Common.out("top \(k) at position \(ids.count - 1) (\(ctx.mode.rawValue)):\n")
            for i in top { Common.out("  \(i)\t\(logits[i])\t\(Common.quoted(tok.piece(Int32(i)) ?? []))\n") }
        }
        return 0
    })
