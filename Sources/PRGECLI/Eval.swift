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
              Option("--task", value: "NAME", help: "task: a folder name of shared/data (sst2, mr, ...) or prompt_response"),
              Option("--config", "-c", value: "FILE", help: "a training config: its task (a custom template too), loss and max_length"),
              Option("--data", value: "FILE", required: true, help: "examples to evaluate (JSONL)"),
              Option("--adapter", value: "FILE", help: "LoRA adapter (GGUF); default: the base model"),
              Option("--limit", value: "N", help: "only the first N examples"),
              Option("--loss", value: "full|candidates", help: "loss over the full vocabulary or the label words (default: the recipe's)"),
              Common.threads, Common.mode, Common.json],
    positionals: [],
    details: """
        The task is --task or the "task" of --config (the config an adapter was trained with
        scores it with the same prompt); --task and --loss override the config. Prompts are cut
        to max_length (the recipe's, or the config's) from the left, as in training. Prints
        {"accuracy": x, "n": n, "loss": l} with --json (accuracy null for prompt_response tasks).
        """,
    run: { a in
        let config = try EvalCLI.configuration(a)
        let task = config.task
        let limit = try a.int("--limit", default: Int.max, in: 1...Int.max)
        let loss = try a.choice("--loss", default: config.loss)
        let rows = try Dataset.readJSONL(path: a.required("--data"))   // before the model: bad data fails fast
        let ctx = try Common.context(a)
        let objective = try Objective(task: task, loss: loss, tokenizer: ctx.model.tokenizer)
        let samples = try Evaluation.samples(rows: Array(rows.prefix(limit)), objective: objective, maxLength: config.maxLength)
        let adapter = try a.string("--adapter").map { try AdapterFile.load(path: $0, model: ctx.model.gguf) }
        let r = try Evaluation.run(Array(samples.prefix(limit)), objective: objective, context: ctx, adapter: adapter)
        if a.flag(Common.json.name) {
            Common.out(r.json.serialized + "\n")
        } else {
            Common.out("n \(r.n)  " + TrainCLI.describe(r) + "\n")
        }
        return 0
    })

enum EvalCLI {
    /// The task, loss and max_length to score with: the recipe's, then --config's, then --task.
    static func configuration(_ a: Arguments) throws -> TrainConfig {
        guard let path = a.string("--config") else {
            guard let name = a.string("--task") else { throw UsageError("missing --task (or --config with a \"task\")") }
            return try TrainConfig(task: JSONNode(.string(name), source: "--task"))
        }
        var bytes = try Common.readFile(path)
        guard case .object(var members) = try JSONValue.parse(bytes: &bytes, source: path) else {
            throw PRGEError.format("\(path): the config must be a JSON object")
        }
        if let name = a.string("--task") {
            members.removeAll { $0.0 == "task" }
            members.append(("task", .string(name)))
        } else if !members.contains(where: { $0.0 == "task" }) {
            throw UsageError("\(path) has no \"task\" and --task is not given")
        }
        return try TrainConfig.parse(JSONNode(.object(members), source: path))
    }
}
