import PRGEKernels

/// A 2-D weight matrix as it lies in the mapped file: `rows` rows of `cols` elements of `type`.
/// Matmuls read it in place (dequantized on the fly), so no f32 copy of the model ever exists.
public struct QMatrix: @unchecked Sendable {
    public let name: String
    public let type: GGMLType
    public let rows: Int        // N: output features
    public let cols: Int        // K: input features (contiguous)
    public let rowBytes: Int
    public let data: UnsafeRawPointer

    init(_ f: GGUFFile, _ name: String, rows: Int, cols: Int) throws {
        guard let t = f.tensor(name) else { throw PRGEError.format("\(f.path): missing tensor '\(name)'") }
        let dims = t.dims.count == 1 ? [t.dims[0], 1] : t.dims
        guard dims.count == 2, dims[0] == cols, dims[1] == rows else {
            throw PRGEError.format("\(f.path): tensor '\(name)' has shape \(t.dims), expected [\(cols), \(rows)]")
        }
        guard let rb = t.type.byteCount(elements: cols) else {
            throw PRGEError.format("\(f.path): tensor '\(name)': row of \(cols) is not whole \(t.type.name) blocks")
        }
        guard t.type != .q8_1 && t.type != .q8_K else {
            throw PRGEError.unsupported("\(f.path): tensor '\(name)' has type \(t.type.name), which prge cannot compute with")
        }
        self.name = name
        type = t.type
        self.rows = rows
        self.cols = cols
        rowBytes = rb
        data = f.data(t).baseAddress!
    }

    /// Dequantize row `r` (caller guarantees 0 ≤ r < rows) into `dst[0..<cols]`.
    func dequantizeRow(_ r: Int, into dst: UnsafeMutablePointer<Float>) {
        _ = prge_dequantize_row(type.rawValue, data + r * rowBytes, dst, Int64(cols))
    }
}

/// An f32 vector (norm weights).
func loadVector(_ f: GGUFFile, _ name: String, count: Int) throws -> [Float] {
    guard let t = f.tensor(name) else { throw PRGEError.format("\(f.path): missing tensor '\(name)'") }
    guard t.elementCount == count else {
        throw PRGEError.format("\(f.path): tensor '\(name)' has \(t.elementCount) elements, expected \(count)")
    }
    var out = [Float](repeating: 0, count: count)
    let src = f.data(t).baseAddress!
    let ok = out.withUnsafeMutableBufferPointer { prge_dequantize_row(t.type.rawValue, src, $0.baseAddress!, Int64(count)) }
    guard ok == 0 else { throw PRGEError.unsupported("\(f.path): tensor '\(name)' has unsupported type \(t.type.name)") }
    return out
}

/// The weights of one transformer block, all [out, in] as GGUF stores them.
public struct LayerWeights: @unchecked Sendable {
    public let attnNorm: [Float]    // [d]
    public let wq, wk, wv, wo: QMatrix
    public let ffnNorm: [Float]     // [d]
    public let wGate, wUp, wDown: QMatrix

    init(_ f: GGUFFile, _ c: LlamaConfig, layer i: Int) throws {
        let p = "blk.\(i)."
        attnNorm = try loadVector(f, p + "attn_norm.weight", count: c.nEmbd)
        wq = try QMatrix(f, p + "attn_q.weight", rows: c.qDim, cols: c.nEmbd)
        wk = try QMatrix(f, p + "attn_k.weight", rows: c.kvDim, cols: c.nEmbd)
        wv = try QMatrix(f, p + "attn_v.weight", rows: c.kvDim, cols: c.nEmbd)
        wo = try QMatrix(f, p + "attn_output.weight", rows: c.nEmbd, cols: c.qDim)
        ffnNorm = try loadVector(f, p + "ffn_norm.weight", count: c.nEmbd)
        wGate = try QMatrix(f, p + "ffn_gate.weight", rows: c.nFF, cols: c.nEmbd)
        wUp = try QMatrix(f, p + "ffn_up.weight", rows: c.nFF, cols: c.nEmbd)
        wDown = try QMatrix(f, p + "ffn_down.weight", rows: c.nEmbd, cols: c.nFF)
    }

    public func matrix(_ p: Projection) -> QMatrix {
        switch p {
        case .q: return wq
        case .k: return wk
        case .v: return wv
        case .o: return wo
        case .gate: return wGate
        case .up: return wUp
        case .down: return wDown
        }
    }
}
