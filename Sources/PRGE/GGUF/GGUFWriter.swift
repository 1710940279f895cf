#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Builds a GGUF v3 file: metadata in insertion order, then tensor infos, then the tensor data,
/// each tensor starting on a multiple of the alignment (`general.alignment`, a u32, default 32).
/// What it writes, `GGUFFile` and the `gguf` Python package read back identically.
public struct GGUFWriter {
    private var metadata: [(key: String, value: GGUFValue)] = []
    private var tensors: [(name: String, dims: [Int], type: GGMLType, data: [UInt8])] = []
    private var tensorNames: Set<String> = []

    /// ggml keeps tensor names in a 64-byte buffer with its NUL: longer names would not load.
    public static let maxNameBytes = 63

    public init() {}

    /// Appends a metadata pair. Keys must be unique; `bytes()` refuses duplicates.
    public mutating func add(_ key: String, _ value: GGUFValue) {
        metadata.append((key, value))
    }

    /// Appends a tensor. `dims` are in ggml order (dims[0] is the contiguous row length) and
    /// `data` holds exactly the tensor's blocks.
    public mutating func addTensor(name: String, dims: [Int], type: GGMLType, data: [UInt8]) throws {
        guard !name.isEmpty, name.utf8.count <= Self.maxNameBytes else {
            throw PRGEError.invalid("tensor name '\(name)' must be 1...\(Self.maxNameBytes) bytes")
        }
        guard !tensorNames.contains(name) else { throw PRGEError.invalid("duplicate tensor '\(name)'") }
        guard (1...GGUFFile.maxDims).contains(dims.count), dims.allSatisfy({ $0 >= 1 && $0 <= Int(Int32.max) }) else {
            throw PRGEError.invalid("tensor '\(name)': dims \(dims) must be 1...\(GGUFFile.maxDims) sizes in 1...\(Int32.max)")
        }
        guard dims[0] % type.blockSize == 0 else {
            throw PRGEError.invalid("tensor '\(name)': row length \(dims[0]) is not a multiple of the \(type.name) block size \(type.blockSize)")
        }
        let (elements, overflow) = dims.dropFirst().reduce((dims[0], false)) { acc, d in
            let (p, o) = acc.0.multipliedReportingOverflow(by: d)
            return (p, acc.1 || o)
        }
        guard !overflow, let n = type.byteCount(elements: elements), n == data.count else {
            throw PRGEError.invalid("tensor '\(name)': \(data.count) bytes of data for dims \(dims) of \(type.name)")
        }
        tensorNames.insert(name)
        tensors.append((name, dims, type, data))
    }

    /// Appends an f32 tensor.
    public mutating func addTensor(name: String, dims: [Int], floats: [Float]) throws {
        var data: [UInt8] = []
        data.reserveCapacity(floats.count * 4)
        for f in floats { data.appendLE(f.bitPattern) }
        try addTensor(name: name, dims: dims, type: .f32, data: data)
    }

    /// The whole file as bytes.
    public func bytes() throws -> [UInt8] {
        var out: [UInt8] = []
        try emit(try header()) { out.append(contentsOf: $0) }
        return out
    }

    /// Writes the file atomically: into `path.tmp-<pid>`, fsync, rename over `path`, then
    /// fsync the directory so the rename itself survives a crash. A failure before the rename
    /// leaves `path` untouched and removes the temporary file.
    public func write(to path: String) throws {
        let head = try header()   // refuse invalid content before touching the disk
        let tmp = "\(path).tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ioError("cannot create", tmp) }
        do {
            try emit(head) { try writeAll(fd, $0, tmp) }
            guard fsync(fd) == 0 else { throw ioError("cannot fsync", tmp) }
        } catch {
            close(fd)
            unlink(tmp)
            throw error
        }
        guard close(fd) == 0 else {
            let e = ioError("cannot close", tmp)
            unlink(tmp)
            throw e
        }
        guard rename(tmp, path) == 0 else {
            let e = ioError("cannot rename '\(tmp)' to", path)
            unlink(tmp)
            throw e
        }
        try fsyncDirectory(of: path)
    }

    // ---- layout ----------------------------------------------------------------------------

    /// Produces the file in order: the header, then each tensor's data followed by padding to
    /// the alignment, so `write` never holds a second copy of the data.
    private func emit(_ header: [UInt8], _ sink: ([UInt8]) throws -> Void) throws {
        let align = try alignment()
        try sink(header)
        for t in tensors {
            try sink(t.data)
            try sink([UInt8](repeating: 0, count: padded(t.data.count, align) - t.data.count))
        }
    }

    /// Magic, version, counts, metadata and tensor infos, padded to the alignment. Checks the
    /// metadata on the way (tensors were checked by addTensor).
    private func header() throws -> [UInt8] {
        let align = try alignment()
        var h: [UInt8] = []
        h.appendLE(UInt32(0x4655_4747))   // "GGUF"
        h.appendLE(UInt32(3))
        h.appendLE(UInt64(tensors.count))
        h.appendLE(UInt64(metadata.count))
        var seen: Set<String> = []
        for (key, value) in metadata {
            guard seen.insert(key).inserted else { throw PRGEError.invalid("duplicate metadata key '\(key)'") }
            h.appendString(key)
            h.appendLE(value.type.rawValue)
            try h.appendValue(value, key)
        }
        var offset = 0
        for t in tensors {
            h.appendString(t.name)
            h.appendLE(UInt32(t.dims.count))
            for d in t.dims { h.appendLE(UInt64(d)) }
            h.appendLE(t.type.rawValue)
            h.appendLE(UInt64(offset))
            offset += padded(t.data.count, align)
        }
        h.append(contentsOf: [UInt8](repeating: 0, count: padded(h.count, align) - h.count))
        return h
    }

    /// general.alignment if set (it must be a u32 power of two, as ggml and gguf-py demand).
    private func alignment() throws -> Int {
        guard let v = metadata.first(where: { $0.key == "general.alignment" })?.value else { return 32 }
        guard case .uint32(let a) = v, a > 0, a & (a - 1) == 0, a <= 1 << 16 else {
            throw PRGEError.invalid("general.alignment must be a uint32 power of two ≤ 65536, got \(v)")
        }
        return Int(a)
    }
}

private func padded(_ n: Int, _ align: Int) -> Int { (n + align - 1) / align * align }

private func ioError(_ what: String, _ path: String) -> PRGEError {
    PRGEError.io("\(what) '\(path)': \(String(cString: strerror(errno)))")
}

private func writeAll(_ fd: Int32, _ bytes: [UInt8], _ path: String) throws {
    try bytes.withUnsafeBytes { buf in
        var done = 0
        while done < buf.count {
            let n = write(fd, buf.baseAddress! + done, buf.count - done)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw ioError("cannot write", path) }
            done += n
        }
    }
}

private func fsyncDirectory(of path: String) throws {
    let dir: String
    if let slash = path.lastIndex(of: "/") {
        dir = slash == path.startIndex ? "/" : String(path[..<slash])
    } else {
        dir = "."
    }
    let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { throw ioError("cannot open directory", dir) }
    defer { close(fd) }
    guard fsync(fd) == 0 else { throw ioError("cannot fsync directory", dir) }
}

// ---- little-endian encoding ------------------------------------------------------------------

fileprivate extension [UInt8] {
    mutating func appendLE<T: FixedWidthInteger>(_ v: T) {
        Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) }
    }

    mutating func appendString(_ s: String) {
        appendLE(UInt64(s.utf8.count))
        append(contentsOf: s.utf8)
    }

    /// A value's payload (its type tag is written by the caller, or is the array's).
    mutating func appendValue(_ v: GGUFValue, _ key: String) throws {
        switch v {
        case .uint8(let x): appendLE(x)
        case .int8(let x): appendLE(x)
        case .uint16(let x): appendLE(x)
        case .int16(let x): appendLE(x)
        case .uint32(let x): appendLE(x)
        case .int32(let x): appendLE(x)
        case .uint64(let x): appendLE(x)
        case .int64(let x): appendLE(x)
        case .float32(let x): appendLE(x.bitPattern)
        case .float64(let x): appendLE(x.bitPattern)
        case .bool(let x): append(x ? 1 : 0)
        case .string(let s): appendString(s)
        case .array(let et, let items):
            // The reader does not take nested arrays, and a mistyped element would make the
            // array unreadable: refuse both here rather than write a broken file.
            guard et != .array else { throw PRGEError.invalid("metadata '\(key)': nested arrays are not supported") }
            appendLE(et.rawValue)
            appendLE(UInt64(items.count))
            for item in items {
                guard item.type == et else {
                    throw PRGEError.invalid("metadata '\(key)': \(item.type) element in an array of \(et)")
                }
                try appendValue(item, key)
            }
        }
    }
}
