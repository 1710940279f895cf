/// Runs forwards of a shared `Model`: owns the thread pool and the scratch buffers, so one
/// Context serves one caller at a time (make one per thread that needs forwards).
public final class Context {
    public let model: Model
    public let pool: ThreadPool
    public var mode: NumericMode
    /// Longest sequence accepted (tokens); defaults to the model's training context.
    public var maxLength: Int
    let ws = Workspace()
    /// Set for one forward by the guide (ZO/Guide.swift): the activations it reads.
    var capture: ActivationCapture?
    /// While set, a forward keeps the stream below its first adapted layer in `lowerStash`, and
    /// a forward of the same batch starts from it (the layers below do not depend on B).
    var keepLower = false {
        didSet { if !keepLower { lowerStash = nil } }
    }
    var lowerStash: LowerStash?

    public init(model: Model, threads: Int = ThreadPool.defaultThreads, mode: NumericMode = .fp32) throws {
        self.model = model
        pool = try ThreadPool(threads: threads)
        self.mode = mode
        maxLength = model.config.nCtxTrain
    }

    /// Full-vocabulary logits at the batch's outputs: [copies × outputs, n_vocab], copy-major.
    public func logits(_ batch: Batch, lora: LoRAPlan? = nil) throws -> [Float] {
        let h = try hidden(batch, lora: lora, cache: nil)
        return outputLogits(h, rows: h.count / model.config.nEmbd)
    }

    /// Logits restricted to `ids` (label words): [copies × outputs, ids.count].
    public func logits(_ batch: Batch, lora: LoRAPlan? = nil, ids: [Int32]) throws -> [Float] {
        for id in ids where id < 0 || Int(id) >= model.config.nVocab {
            throw PRGEError.invalid("token id \(id) outside the vocabulary")
        }
        let h = try hidden(batch, lora: lora, cache: nil)
        return outputLogits(h, rows: h.count / model.config.nEmbd, ids: ids)
    }

    // [rows, d] · output[n_vocab, d]ᵀ
    func outputLogits(_ h: [Float], rows: Int) -> [Float] {
        let v = model.config.nVocab, d = model.config.nEmbd
        var out = [Float](repeating: 0, count: rows * v)
        h.withUnsafeBufferPointer { hp in
            out.withUnsafeMutableBufferPointer { op in
                matmul(pool, mode, hp.baseAddress!, ldx: d, model.output, op.baseAddress!, ldy: v, rows: rows)
            }
        }
        return out
    }

    // Only the rows of the output matrix for `ids`, dequantized into [ids, d] first.
    func outputLogits(_ h: [Float], rows: Int, ids: [Int32]) -> [Float] {
        let d = model.config.nEmbd
        var w = [Float](repeating: 0, count: ids.count * d)
        w.withUnsafeMutableBufferPointer { wp in
            for (i, id) in ids.enumerated() { model.output.dequantizeRow(Int(id), into: wp.baseAddress! + i * d) }
        }
        var out = [Float](repeating: 0, count: rows * ids.count)
        h.withUnsafeBufferPointer { hp in
            w.withUnsafeBufferPointer { wp in
                out.withUnsafeMutableBufferPointer { op in
                    matmulF32(pool, hp.baseAddress!, ldx: d, wp.baseAddress!, n: ids.count, k: d,
                              op.baseAddress!, ldy: ids.count, rows: rows, accumulate: false)
                }
            }
        }
        return out
    }
}

/// Scratch of one Context, grown on demand and reused.
final class Workspace {
    let x = FloatBuffer(), xb = FloatBuffer(), q = FloatBuffer(), k = FloatBuffer(), v = FloatBuffer()
    let att = FloatBuffer(), gate = FloatBuffer(), up = FloatBuffer()
    let loraA = FloatBuffer(), loraH = FloatBuffer()
    let ropeCos = FloatBuffer(), ropeSin = FloatBuffer()
}
