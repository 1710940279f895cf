import PRGEKernels

// Quantized bytes -> f32, through the C kernels of dequant.c. The kernels trust their
// arguments, so every size is checked here first.

extension GGMLType {
    /// Whether `prge_dequantize_row` knows this type. Q8_1 and Q8_K are ggml's intermediate
    /// formats for activations: they never appear as model weights.
    public var canDequantize: Bool { self != .q8_1 && self != .q8_K }
}

/// Dequantize `bytes`, a whole number of blocks of `type`, into `out`, which must hold at
/// least as many elements as the bytes encode.
public func dequantize(_ type: GGMLType, bytes: UnsafeRawBufferPointer,
                       into out: UnsafeMutableBufferPointer<Float>) throws {
    guard type.canDequantize else { throw PRGEError.unsupported("cannot dequantize tensor type \(type.name)") }
    guard bytes.count % type.typeSize == 0 else {
        throw PRGEError.invalid("\(bytes.count) bytes is not a whole number of \(type.name) blocks (\(type.typeSize) bytes each)")
    }
    let n = bytes.count / type.typeSize * type.blockSize
    guard out.count >= n else {
        throw PRGEError(.bufferTooSmall, "dequantizing \(n) \(type.name) elements into a buffer of \(out.count)")
    }
    guard n > 0, let src = bytes.baseAddress, let dst = out.baseAddress else { return }
    guard prge_dequantize_row(type.rawValue, src, dst, Int64(n)) == 0 else {
        throw PRGEError(.internal, "dequant kernel refused type \(type.name)")
    }
}

/// Dequantize raw block bytes of `type` into a new array.
public func dequantize(_ type: GGMLType, bytes: [UInt8]) throws -> [Float] {
    guard bytes.count % type.typeSize == 0 else {
        throw PRGEError.invalid("\(bytes.count) bytes is not a whole number of \(type.name) blocks (\(type.typeSize) bytes each)")
    }
    let n = bytes.count / type.typeSize * type.blockSize
    var out = [Float](repeating: 0, count: n)
    try bytes.withUnsafeBytes { src in
        try out.withUnsafeMutableBufferPointer { try dequantize(type, bytes: src, into: $0) }
    }
    return out
}

extension GGUFFile {
    /// The whole tensor as f32, in ggml order (row after row).
    public func dequantize(_ t: GGUFTensorInfo) throws -> [Float] {
        let src = try checkedData(t)
        var out = [Float](repeating: 0, count: t.elementCount)
        try out.withUnsafeMutableBufferPointer { try PRGE.dequantize(t.type, bytes: src, into: $0) }
        return out
    }

    /// Row `row` (of `t.rowCount`, each `t.rowLength` elements) into the front of `out`.
    public func dequantizeRow(_ t: GGUFTensorInfo, row: Int, into out: UnsafeMutableBufferPointer<Float>) throws {
        let src = try checkedData(t)
        guard row >= 0, row < t.rowCount else {
            throw PRGEError.invalid("row \(row) out of range for tensor '\(t.name)' with \(t.rowCount) rows")
        }
        let rowBytes = t.rowLength / t.type.blockSize * t.type.typeSize
        try PRGE.dequantize(t.type, bytes: UnsafeRawBufferPointer(rebasing: src[row * rowBytes ..< (row + 1) * rowBytes]), into: out)
    }

    /// The tensor's bytes, after making sure `t` describes a tensor of this file (an info
    /// from another file would point anywhere in this mapping).
    private func checkedData(_ t: GGUFTensorInfo) throws -> UnsafeRawBufferPointer {
        guard let mine = tensor(t.name), mine.fileOffset == t.fileOffset, mine.byteCount == t.byteCount,
              mine.type == t.type, mine.dims == t.dims else {
            throw PRGEError.invalid("tensor '\(t.name)' does not belong to \(path)")
        }
        return data(mine)
    }
}
