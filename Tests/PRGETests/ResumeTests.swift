import Testing
@testable import PRGE

/// Checkpoint and resume (issue 3): stopping at step k and resuming gives what not stopping
/// gives, bit for bit: B, the best B, the step count, and the step log's bytes.
@Suite struct ResumeTests {
    static func config(_ dir: TempDir, _ name: String) -> String {
        #""eval_every": 2, "checkpoint": "\#(dir.path)/\#(name).gguf", "step_log": "\#(dir.path)/\#(name).bin", "log": "\#(dir.path)/\#(name).jsonl""#
    }

    @Test func stopAndResumeIsBitExact() throws {
        let dir = try TempDir()
        // Uninterrupted: 4 steps, evaluations at 0, 2 and 4.
        let whole = try TrainFixtures.trainer(Self.config(dir, "whole"), train: 0..<6, dev: 6..<8)
        try whole.run(maxSteps: 4)

        // Interrupted: 2 steps (checkpoint at 2), then one more step that no checkpoint saw,
        // as if the process died after it; a new trainer resumes from the checkpoint.
        let first = try TrainFixtures.trainer(Self.config(dir, "split"), train: 0..<6, dev: 6..<8)
        try first.run(maxSteps: 2)
        try first.step(samples: Array(first.trainSet[0..<2]))
        let second = try TrainFixtures.trainer(Self.config(dir, "split"), train: 0..<6, dev: 6..<8)
        try second.resume(from: dir.path + "/split.gguf")
        #expect(second.steps == 2)
        try second.run(maxSteps: 2)

        #expect(second.steps == whole.steps)
        #expect(TrainFixtures.bits(second.adapter) == TrainFixtures.bits(whole.adapter))
        #expect(second.best?.step == whole.best?.step && second.best?.eval == whole.best?.eval)
        #expect(TrainFixtures.bits(try second.bestAdapter()) == TrainFixtures.bits(try whole.bestAdapter()))
        // The extra step's record was dropped from the log and written again by the resumed run.
        #expect(try Dataset.readFile(dir.path + "/split.bin") == Dataset.readFile(dir.path + "/whole.bin"))
    }

    /// A trainer that would not continue the same trajectory refuses the checkpoint, says why,
    /// and is left untouched.
    @Test func resumeRefusesAnotherTrajectory() throws {
        let dir = try TempDir()
        let path = dir.path + "/ck.gguf"
        try TrainFixtures.trainer(train: 0..<4).saveCheckpoint(to: path)
        let lr = try TrainFixtures.trainer(#""lr": 0.25"#, train: 0..<4)
        expectError(containing: "lr is 0.5 in the checkpoint, 0.25 here") { try lr.resume(from: path) }
        expectError(containing: "the training set differs") { try TrainFixtures.trainer(train: 0..<3).resume(from: path) }
        expectError(containing: "A differs") {
            try TrainFixtures.trainer(#""adapter": {"rank": 2, "layers": [28, 29], "seed": 5}"#, train: 0..<4).resume(from: path)
        }
        expectError(containing: "not a prge checkpoint") {
            let t = try TrainFixtures.trainer(train: 0..<4)
            try AdapterFile.save(t.adapter, to: path)
            try t.resume(from: path)
        }
        // Threads, budgets and paths are not part of the trajectory: those resume fine.
        let ok = try TrainFixtures.trainer(#""threads": 1, "eval_every": 7, "minutes": 3"#, train: 0..<4)
        try TrainFixtures.trainer(train: 0..<4).saveCheckpoint(to: path)
        try ok.resume(from: path)
        #expect(ok.steps == 0)
    }
}
