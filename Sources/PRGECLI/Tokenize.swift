import PRGE

// prge tokenize: text → token ids, as llama.cpp's llama_tokenize does it.
let tokenizeCommand = Command(
    name: "tokenize",
    summary: "Print the token ids of TEXT (BOS/EOS only where the model's metadata adds them).",
    options: [Common.model, Common.json, Common.parseSpecial],
    positionals: ["TEXT"],
    details: "Readable output is one token per line: id and piece. --json prints [id, ...].",
    run: { a in
        // Only the tokenizer is needed: no weights, so any GGUF with a vocabulary will do.
        let tok = try Tokenizer(gguf: GGUFFile(path: a.required(Common.model.name)))
        let ids = tok.encode(a.positionals[0], addSpecial: true, parseSpecial: a.flag(Common.parseSpecial.name))
        if a.flag(Common.json.name) {
            Common.out(JSONValue.array(ids.map { .number(Double($0)) }).serialized + "\n")
        } else {
            Common.out(ids.map { "\($0)\t\(Common.quoted(tok.piece($0) ?? []))\n" }.joined())
        }
        return 0
    })
