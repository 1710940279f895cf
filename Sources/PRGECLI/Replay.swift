import PRGE
#if canImport(Glibc)
import Glibc
#endif

// prge replay: rebuild an adapter from its initial state and the binary step log, without the
// data or a forward pass (docs/STEPLOG.md).
let replayCommand = Command(
    name: "replay",
    summary: "Rebuild an adapter bit for bit from an initial adapter and a step log.",
    options: [Option("--adapter", value: "FILE", required: true, help: "the initial adapter (GGUF), e.g. the untrained one or an older save"),
              Option("--log", value: "FILE", required: true, help: "binary step log written by training (step_log)"),
              Option("--out", "-o", value: "FILE", required: true, help: "where to write the rebuilt adapter"),
              Option("--model", "-m", value: "FILE", help: "check that the log was made on this base model (SHA-256)"),
              Common.json],
    positionals: [],
    details: """
        Applies the log's records, from the initial adapter's step (prge.train.step) on, exactly as
        training did. A log that is truncated or corrupted is replayed up to its last good record;
        the output is still written, the problem is reported and the exit status is 1.
        """,
    run: { a in
        let log = try StepLog.read(path: a.required("--log"))
        if let m = a.string("--model") {
            let sha = try fileSHA256(path: m)
            guard log.header.modelSHA256.allSatisfy({ $0 == 0 }) || sha == log.header.modelSHA256 else {
                throw PRGEError(.state, "the step log was made on another base model than \(m) (SHA-256 differs)")
            }
        }
        // The adapter's shape comes from the log's header, so no model is needed to load it.
        let path = a.required("--adapter")
        let f = try GGUFFile(path: path)
        let shapes = Dictionary(log.header.slots.map { ("\($0.layer).\($0.projection.rawValue)", ($0.dIn, $0.dOut)) }) { x, _ in x }
        let initial = try AdapterFile.load(f, architecture: try f.string("general.architecture"), nLayer: log.header.nLayer) { layer, p in
            shapes["\(layer).\(p.rawValue)"]
        }
        let out = try StepLog.replay(initial: initial, log: log)
        try AdapterFile.save(out, to: a.required("--out"), architecture: try f.string("general.architecture"))
        let steps = StepLog.trainedSteps(out) ?? 0
        if a.flag(Common.json.name) {
            Common.out(JSONValue.object([("out", .string(a.required("--out"))), ("steps", .number(Double(steps))),
                                         ("records", .number(Double(log.records.count))),
                                         ("problem", log.problem.map(JSONValue.string) ?? .null)]).serialized + "\n")
        } else {
            Common.out("wrote \(a.required("--out")): adapter at step \(steps)\n")
        }
        if let p = log.problem {
            Common.printError(p)
            return 1
        }
        return 0
    })
