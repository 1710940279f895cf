// Checks on what the host passes in, done before anything is read or written: NULL, alignment,
// sizes (a size_t above Int.max arrives here as a negative Int), ranges that would wrap the
// address space, and UTF-8. Each failure names the argument.
import PRGE

private func checkRange(_ p: UnsafeRawPointer, count: Int, stride: Int, alignment: Int, _ what: String) throws {
    guard Int(bitPattern: p) % alignment == 0 else {
        throw PRGEError.invalid("\(what) (\(p)) is not aligned to \(alignment) bytes")
    }
    guard count >= 0, count <= Int.max / stride else {
        throw PRGEError.invalid("\(what): size \(UInt(bitPattern: count)) is too large")
    }
    guard UInt(bitPattern: Int(bitPattern: p)).addingReportingOverflow(UInt(count * stride)).overflow == false else {
        throw PRGEError.invalid("\(what): \(count) elements at \(p) run past the end of the address space")
    }
}

/// A caller's array of `count` elements; NULL is accepted only when count is 0.
func input<T>(_ p: UnsafePointer<T>?, count: Int, _ what: String) throws -> UnsafeBufferPointer<T> {
    guard let p else {
        guard count == 0 else { throw PRGEError.invalid("\(what) is NULL but its size is \(UInt(bitPattern: count))") }
        return UnsafeBufferPointer(start: nil, count: 0)
    }
    try checkRange(p, count: count, stride: MemoryLayout<T>.stride, alignment: MemoryLayout<T>.alignment, what)
    return UnsafeBufferPointer(start: p, count: count)
}

/// A caller's output array with room for `count` elements; NULL is accepted only when count is 0.
func output<T>(_ p: UnsafeMutablePointer<T>?, count: Int, _ what: String) throws -> UnsafeMutableBufferPointer<T> {
    UnsafeMutableBufferPointer(mutating: try input(UnsafePointer(p), count: count, what))
}

/// A required pointer to one value.
func required<T>(_ p: UnsafePointer<T>?, _ what: String) throws -> UnsafePointer<T> {
    guard let p else { throw PRGEError.invalid("\(what) is NULL") }
    try checkRange(p, count: 1, stride: MemoryLayout<T>.stride, alignment: MemoryLayout<T>.alignment, what)
    return p
}

func required<T>(_ p: UnsafeMutablePointer<T>?, _ what: String) throws -> UnsafeMutablePointer<T> {
    UnsafeMutablePointer(mutating: try required(UnsafePointer(p), what))
}

/// An optional out-pointer: NULL means the caller does not want the value.
func optional<T>(_ p: UnsafeMutablePointer<T>?, _ what: String) throws -> UnsafeMutablePointer<T>? {
    guard p != nil else { return nil }
    return try required(p, what)
}

/// `length` bytes of UTF-8 text (no NUL needed).
func utf8Text(_ p: UnsafePointer<CChar>?, length: Int, _ what: String) throws -> String {
    let bytes = try input(p, count: length, what)
    guard let s = String(validating: UnsafeRawBufferPointer(bytes), as: UTF8.self) else {
        throw PRGEError.invalid("\(what) is not valid UTF-8")
    }
    return s
}

/// A NUL-terminated UTF-8 string.
func utf8CString(_ p: UnsafePointer<CChar>?, _ what: String) throws -> String {
    guard let s = String(validatingCString: try required(p, what)) else {
        throw PRGEError.invalid("\(what) is not valid UTF-8")
    }
    return s
}

/// Writes `s` NUL-terminated into the caller's buffer, and its length (without the NUL) into
/// *length even when the buffer is too small, so a NULL/0 call asks for the size.
func writeText(_ s: String, _ buf: UnsafeMutablePointer<CChar>?, size: Int, length: UnsafeMutablePointer<Int>?) throws {
    let out = try output(buf, count: size, "output buffer")
    let len = try optional(length, "length pointer")
    var s = s
    try s.withUTF8 { utf8 in
        len?.pointee = utf8.count
        guard utf8.count < out.count else {
            throw PRGEError(.bufferTooSmall, "output buffer has \(out.count) bytes; the text needs \(utf8.count + 1) with its NUL")
        }
        UnsafeMutableRawBufferPointer(out).copyMemory(from: UnsafeRawBufferPointer(utf8))
        out[utf8.count] = 0
    }
}
