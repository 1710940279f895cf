import PRGE
#if canImport(Glibc)
import Glibc
#endif

// prge eval: accuracy (best label word) and mean loss of the model, with or without an adapter,
// on a task's JSONL data: the zero-shot vs fine-tuned numbers.
let evalCommand = Command(
    name: "eval",
    summary: "Accuracy and loss of the model (with --adapter: and adapter) on a task's JSONL data.",
    options: [Common.model,
              Option("--task", value: "NAME", required: true, help: "task: a folder name of shared/data (sst2, mr, ...) or prompt_response"),
              Option("--data", value: "FILE", required: true, help: "examples to evaluate (JSONL)"),
              Option("--adapter", value: "FILE", help: "LoRA adapter (GGUF); default: the base model"),
              Option("--limit", value: "N", help: "only the first N examples"),
              Option("--loss", value: "full|candidates", help: "loss over the full vocabulary or the label words (default: the recipe's)"),
              Common.threads, Common.mode, Common.json],
    positionals: [],
    details: """
        Prompts are cut to the recipe's max_length from the left, as in training. Prints
        {"accuracy": x, "n": n, "loss": l} with --json (accuracy null for prompt_response tasks).
        """,
    run: { a in
        let task = try Task.named(a.required("--task"))
        let limit = try a.int("--limit", default: Int.max, in: 1...Int.max)
        let loss = try a.choice("--loss", default: Recipe.loss)
        let rows = try Dataset.readJSONL(path: a.required("--data"))   // before the model: bad data fails fast
        let ctx = try Common.context(a)
        let objective = try Objective(task: task, loss: loss, tokenizer: ctx.model.tokenizer)
        let samples = try Evaluation.samples(rows: Array(rows.prefix(limit)), objective: objective, maxLength: Recipe.maxLength)
        let adapter = try a.string("--adapter").map { try AdapterFile.load(path: $0, model: ctx.model.gguf) }
        let r = try Evaluation.run(Array(samples.prefix(limit)), objective: objective, context: ctx, adapter: adapter)
        if a.flag(Common.json.name) {
            Common.out(r.json.serialized + "\n")
        } else {
            Common.out("n \(r.n)  " + TrainCLI.describe(r) + "\n")
        }
        return 0
    })
