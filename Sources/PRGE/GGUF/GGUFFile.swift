#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One tensor's header entry. `dims` are in ggml order: dims[0] is the contiguous (row) length.
public struct GGUFTensorInfo: Sendable {
    public let name: String
    public let dims: [Int]
    public let type: GGMLType
    /// Offset of the data from the start of the file (already validated to lie inside it).
    public let fileOffset: Int
    public let byteCount: Int
    public var elementCount: Int { dims.reduce(1, *) }
    public var rowLength: Int { dims.first ?? 1 }
    public var rowCount: Int { elementCount / max(rowLength, 1) }
}

/// A GGUF v2/v3 file, memory-mapped read-only. Every count, size and offset is checked before
/// use; a malformed file throws `PRGEError.format` naming what is wrong. The mapping lives as
/// long as this object, so tensor data pointers must not outlive it.
public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let version: UInt32
    public let alignment: Int
    /// Metadata in file order (order matters to writers and to people reading dumps).
    public let metadata: [(key: String, value: GGUFValue)]
    public let tensors: [GGUFTensorInfo]
    private let index: [String: Int]
    private let metaIndex: [String: Int]
    /// Start of the tensor data section, from the start of the file.
    public let dataOffset: Int
    private let mapping: UnsafeRawBufferPointer
    private let ownsMapping: Bool

    /// Limits that keep a hostile header from making us allocate unbounded memory.
    public static let maxTensors = 1 << 20
    public static let maxMetadata = 1 << 20
    public static let maxStringBytes = 1 << 24
    public static let maxArrayCount = 1 << 26
    public static let maxDims = 4

    public convenience init(path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw PRGEError.io("cannot open '\(path)': \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw PRGEError.io("cannot stat '\(path)'") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw PRGEError.io("'\(path)' is not a regular file") }
        let size = Int(st.st_size)
        guard size >= 24 else { throw PRGEError.format("'\(path)': file is \(size) bytes, too short for a GGUF header") }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw PRGEError.io("cannot mmap '\(path)': \(String(cString: strerror(errno)))")
        }
        let buf = UnsafeRawBufferPointer(start: base, count: size)
        do { try self.init(path: path, bytes: buf, owns: true) } catch { munmap(base, size); throw error }
    }

    /// Parse a GGUF image already in memory (not copied; the caller keeps it alive).
    public convenience init(bytes: UnsafeRawBufferPointer, name: String = "<memory>") throws {
        try self.init(path: name, bytes: bytes, owns: false)
    }

    private init(path: String, bytes: UnsafeRawBufferPointer, owns: Bool) throws {
        self.path = path
        self.mapping = bytes
        self.ownsMapping = owns
        var r = ByteReader(bytes, file: path)
        let magic = try r.u32()
        guard magic == 0x4655_4747 else { throw r.error("bad magic (not a GGUF file)") }
        version = try r.u32()
        guard version == 2 || version == 3 else { throw r.error("unsupported GGUF version \(version) (need 2 or 3)") }
        let nTensors = try r.count(Self.maxTensors, "tensor count")
        let nKV = try r.count(Self.maxMetadata, "metadata count")
        // A pair takes at least 13 bytes (empty key, type, one-byte value): a larger count is a
        // lie, refused before anything is sized by it.
        guard nKV <= r.remaining / 13 else { throw r.error("metadata count \(nKV) cannot fit in the \(r.remaining) bytes left: truncated file?") }

        var meta: [(key: String, value: GGUFValue)] = []
        var metaIndex: [String: Int] = [:]
        meta.reserveCapacity(nKV)
        for i in 0..<nKV {
            let key = try r.string("metadata key #\(i)")
            let raw = try r.u32()
            guard let t = GGUFValueType(rawValue: raw) else { throw r.error("metadata '\(key)': unknown value type \(raw)") }
            let v = try r.value(t, key)
            guard metaIndex[key] == nil else { throw r.error("duplicate metadata key '\(key)'") }
            metaIndex[key] = meta.count
            meta.append((key, v))
        }
        metadata = meta
        self.metaIndex = metaIndex

        var align = 32
        if let i = metaIndex["general.alignment"] {
            guard let a = meta[i].value.int, a > 0, a & (a - 1) == 0, a <= 1 << 16 else {
                throw PRGEError.format("\(path): general.alignment must be a power of two ≤ 65536")
            }
            align = a
        }
        alignment = align

        struct Raw { var name: String; var dims: [Int]; var type: GGMLType; var offset: Int }
        // A tensor info takes at least 32 bytes (empty name, one dimension).
        guard nTensors <= r.remaining / 32 else { throw r.error("tensor count \(nTensors) cannot fit in the \(r.remaining) bytes left: truncated file?") }
        var raws: [Raw] = []
        raws.reserveCapacity(nTensors)
        for i in 0..<nTensors {
            let name = try r.string("tensor name #\(i)")
            let nd = Int(try r.u32())
            guard nd >= 1, nd <= Self.maxDims else { throw r.error("tensor '\(name)' has \(nd) dimensions (need 1...\(Self.maxDims))") }
            var dims: [Int] = []
            var total = 1
            for _ in 0..<nd {
                let d = try r.u64()
                guard d >= 1, d <= UInt64(Int32.max) else { throw r.error("tensor '\(name)': dimension \(d) out of range") }
                dims.append(Int(d))
                let (p, o) = total.multipliedReportingOverflow(by: Int(d))
                guard !o, p <= 1 << 40 else { throw r.error("tensor '\(name)': element count overflows") }
                total = p
            }
            let rawType = try r.u32()
            guard let type = GGMLType(rawValue: rawType) else { throw r.error("tensor '\(name)': unknown ggml type \(rawType)") }
            guard dims[0] % type.blockSize == 0 else {
                throw r.error("tensor '\(name)': row length \(dims[0]) is not a multiple of the \(type.name) block size \(type.blockSize)")
            }
            let off = try r.u64()
            guard off <= UInt64(Int.max / 2) else { throw r.error("tensor '\(name)': offset \(off) out of range") }
            guard Int(off) % align == 0 else { throw r.error("tensor '\(name)': offset \(off) is not aligned to \(align)") }
            raws.append(Raw(name: name, dims: dims, type: type, offset: Int(off)))
        }
        let headerEnd = r.offset
        let data = (headerEnd + align - 1) / align * align
        dataOffset = data

        var infos: [GGUFTensorInfo] = []
        var index: [String: Int] = [:]
        for t in raws {
            guard index[t.name] == nil else { throw PRGEError.format("\(path): duplicate tensor '\(t.name)'") }
            guard let n = t.type.byteCount(elements: t.dims.reduce(1, *)) else {
                throw PRGEError.format("\(path): tensor '\(t.name)': size overflows")
            }
            let start = data + t.offset
            guard start <= bytes.count, n <= bytes.count - start else {
                throw PRGEError.format("\(path): tensor '\(t.name)' (\(n) bytes at offset \(start)) extends past the end of the file (\(bytes.count) bytes): truncated file?")
            }
            index[t.name] = infos.count
            infos.append(GGUFTensorInfo(name: t.name, dims: t.dims, type: t.type, fileOffset: start, byteCount: n))
        }
        tensors = infos
        self.index = index
    }

    deinit {
        if ownsMapping, let base = mapping.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), mapping.count) }
    }

    public var fileSize: Int { mapping.count }

    public subscript(key: String) -> GGUFValue? { metaIndex[key].map { metadata[$0].value } }

    public func tensor(_ name: String) -> GGUFTensorInfo? { index[name].map { tensors[$0] } }

    /// The raw (still quantized) bytes of a tensor, inside the mapping.
    public func data(_ t: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: mapping[t.fileOffset ..< t.fileOffset + t.byteCount])
    }

    // Typed metadata lookups that name the key in the error.
    public func int(_ key: String) throws -> Int {
        guard let v = self[key] else { throw PRGEError.format("\(path): missing metadata '\(key)'") }
        guard let i = v.int else { throw PRGEError.format("\(path): metadata '\(key)' is not an integer") }
        return i
    }
    public func double(_ key: String) throws -> Double {
        guard let v = self[key] else { throw PRGEError.format("\(path): missing metadata '\(key)'") }
        guard let d = v.double else { throw PRGEError.format("\(path): metadata '\(key)' is not a number") }
        return d
    }
    public func string(_ key: String) throws -> String {
        guard let v = self[key] else { throw PRGEError.format("\(path): missing metadata '\(key)'") }
        guard let s = v.string else { throw PRGEError.format("\(path): metadata '\(key)' is not a string") }
        return s
    }
}

/// Bounds-checked little-endian cursor over the header bytes.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    let file: String
    var offset = 0

    init(_ bytes: UnsafeRawBufferPointer, file: String) { self.bytes = bytes; self.file = file }

    var remaining: Int { bytes.count - offset }

    /// The fewest bytes a value of type `t` can take (a string: its u64 length).
    static func minBytes(_ t: GGUFValueType) -> Int {
        switch t {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64, .string: return 8
        case .array: return 12   // element type and count
        }
    }

    func error(_ what: String) -> PRGEError { PRGEError.format("\(file): \(what) (at byte \(offset))") }

    mutating func take(_ n: Int, _ what: @autoclosure () -> String) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= bytes.count - offset else {
            throw error("unexpected end of file reading \(what()) (need \(n) bytes, \(bytes.count - offset) left): truncated file?")
        }
        defer { offset += n }
        return UnsafeRawBufferPointer(rebasing: bytes[offset ..< offset + n])
    }
    mutating func load<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let b = try take(MemoryLayout<T>.size, "\(T.self)")
        return T(littleEndian: b.loadUnaligned(as: T.self))
    }
    mutating func u32() throws -> UInt32 { try load(UInt32.self) }
    mutating func u64() throws -> UInt64 { try load(UInt64.self) }

    /// A u64 count that must be ≤ limit.
    mutating func count(_ limit: Int, _ what: String) throws -> Int {
        let n = try u64()
        guard n <= UInt64(limit) else { throw error("\(what) \(n) exceeds the limit \(limit)") }
        return Int(n)
    }
    mutating func string(_ what: String) throws -> String {
        let n = try count(GGUFFile.maxStringBytes, "length of \(what)")
        let b = try take(n, what)
        return String(decoding: b, as: UTF8.self)
    }
    mutating func value(_ t: GGUFValueType, _ key: String) throws -> GGUFValue {
        switch t {
        case .uint8: return .uint8(try load(UInt8.self))
        case .int8: return .int8(try load(Int8.self))
        case .uint16: return .uint16(try load(UInt16.self))
        case .int16: return .int16(try load(Int16.self))
        case .uint32: return .uint32(try load(UInt32.self))
        case .int32: return .int32(try load(Int32.self))
        case .uint64: return .uint64(try load(UInt64.self))
        case .int64: return .int64(try load(Int64.self))
        case .float32: return .float32(Float(bitPattern: try load(UInt32.self)))
        case .float64: return .float64(Double(bitPattern: try load(UInt64.self)))
        case .bool:
            let b = try load(UInt8.self)
            guard b <= 1 else { throw error("metadata '\(key)': bool byte \(b) is not 0 or 1") }
            return .bool(b == 1)
        case .string: return .string(try string("value of '\(key)'"))
        case .array:
            let raw = try u32()
            guard let et = GGUFValueType(rawValue: raw) else { throw error("metadata '\(key)': unknown array element type \(raw)") }
            guard et != .array else { throw error("metadata '\(key)': nested arrays are not supported") }
            let n = try count(GGUFFile.maxArrayCount, "array length of '\(key)'")
            // A count larger than what is left can hold is a lie: refuse it before reserving.
            guard n <= remaining / Self.minBytes(et) else { throw error("metadata '\(key)': array of \(n) elements runs past the end of the file: truncated file?") }
            var a: [GGUFValue] = []
            a.reserveCapacity(n)
            for _ in 0..<n { a.append(try value(et, key)) }
            return .array(et, a)
        }
    }
}
