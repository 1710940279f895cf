#if canImport(Glibc)
import Glibc
#endif
import Synchronization

// The binary step log: every training step as (seed, step, η, ε, q, g_1..g_q), a few bytes
// each, from which `replay` rebuilds the adapter bit for bit without data or forward passes
// (z is regenerated from the counter RNG). Format and policies: docs/STEPLOG.md.
//
// Header (little-endian):
//   "PRGESTEP" | version u32 | header bytes u32 | rng_version u32 | model sha256 [32]
//   | n_layer u32 | rank u32 | alpha f32 | lora seed u64 | n_slots u32
//   | n_slots × (layer u32, projection u32, d_in u32, d_out u32) | crc32 u32 of all before it
// Record: seed u64 | step u64 | lr f32 | eps f32 | q u32 | g f32 × q | crc32 u32 of all before it
//
// Records are appended with one write(2) each, so a crash tears at most the last one; the
// reader stops at the first record that is short, has a bad checksum or breaks the step
// sequence, and says why.

public struct StepLogHeader: Sendable, Equatable {
    public struct Slot: Sendable, Equatable {
        public var layer: Int, projection: Projection, dIn: Int, dOut: Int
    }
    public var rngVersion: UInt32
    /// SHA-256 of the base model file; all zero when unknown.
    public var modelSHA256: [UInt8]
    public var nLayer: Int
    public var rank: Int
    public var alpha: Float
    public var loraSeed: UInt64
    public var slots: [Slot]

    public static let magic = Array("PRGESTEP".utf8)
    public static let version: UInt32 = 1

    /// The header for training `adapter` on the model whose file hashes to `modelSHA256`.
    public init(adapter: LoRAAdapter, modelSHA256: [UInt8]) {
        rngVersion = PRGE.rngVersion
        self.modelSHA256 = modelSHA256
        nLayer = adapter.nLayer
        rank = adapter.config.rank
        alpha = adapter.config.alpha
        loraSeed = adapter.config.seed
        slots = adapter.slots.map { Slot(layer: $0.layer, projection: $0.proj, dIn: $0.dIn, dOut: $0.dOut) }
    }

    /// Why `adapter` cannot be replayed with this log, or nil if it can.
    public func mismatch(_ adapter: LoRAAdapter) -> String? {
        let other = StepLogHeader(adapter: adapter, modelSHA256: modelSHA256)
        if rngVersion != PRGE.rngVersion {
            return "the log was made with RNG version \(rngVersion); this build has version \(PRGE.rngVersion)"
        }
        guard other.rank == rank, other.alpha == alpha, other.slots == slots, other.nLayer == nLayer else {
            return "the adapter (rank \(other.rank), α \(other.alpha), \(other.slots.count) slots) is not the shape the log was made for (rank \(rank), α \(alpha), \(slots.count) slots)"
        }
        return nil
    }

    public var bytes: [UInt8] {
        var b = Self.magic
        b.le(Self.version)
        b.le(UInt32(76 + 16 * slots.count + 4))
        b.le(rngVersion)
        b += modelSHA256
        b.le(UInt32(nLayer)); b.le(UInt32(rank)); b.le(alpha.bitPattern); b.le(loraSeed)
        b.le(UInt32(slots.count))
        for s in slots { b.le(UInt32(s.layer)); b.le(UInt32(s.projection.rawValue)); b.le(UInt32(s.dIn)); b.le(UInt32(s.dOut)) }
        b.le(crc32(b))
        return b
    }

    /// Parses a header at the start of `b`; returns it and its size.
    static func parse(_ b: [UInt8], file: String) throws -> (StepLogHeader, Int) {
        func bad(_ m: String) -> PRGEError { PRGEError.format("\(file): not a usable step log: \(m)") }
        guard b.count >= 80, Array(b[0..<8]) == magic else { throw bad("no PRGESTEP header") }
        let version = b.u32(8)
        guard version == Self.version else { throw PRGEError.unsupported("\(file): step log version \(version); this build reads version \(Self.version)") }
        let size = Int(b.u32(12)), n = Int(b.u32(72))
        guard n <= 1 << 20, size == 76 + 16 * n + 4 else { throw bad("header size \(size) does not fit \(n) slots") }
        guard b.count >= size else { throw bad("header truncated (\(b.count) of \(size) bytes)") }
        guard crc32(b[0..<(size - 4)]) == b.u32(size - 4) else { throw bad("header checksum mismatch (corrupted)") }
        var slots: [Slot] = []
        for i in 0..<n {
            let o = 76 + 16 * i
            guard let p = Projection(rawValue: Int(b.u32(o + 4))) else { throw bad("slot \(i): unknown projection \(b.u32(o + 4))") }
            slots.append(Slot(layer: Int(b.u32(o)), projection: p, dIn: Int(b.u32(o + 8)), dOut: Int(b.u32(o + 12))))
        }
        let h = StepLogHeader(rngVersion: b.u32(16), modelSHA256: Array(b[20..<52]), nLayer: Int(b.u32(52)),
                              rank: Int(b.u32(56)), alpha: Float(bitPattern: b.u32(60)), loraSeed: b.u64(64), slots: slots)
        return (h, size)
    }

    init(rngVersion: UInt32, modelSHA256: [UInt8], nLayer: Int, rank: Int, alpha: Float, loraSeed: UInt64, slots: [Slot]) {
        self.rngVersion = rngVersion; self.modelSHA256 = modelSHA256; self.nLayer = nLayer
        self.rank = rank; self.alpha = alpha; self.loraSeed = loraSeed; self.slots = slots
    }
}

extension StepRecord {
    /// The record as stored: fields, then the CRC-32 of them.
    public var logBytes: [UInt8] {
        var b: [UInt8] = []
        b.reserveCapacity(32 + 4 * g.count)
        b.le(seed); b.le(step); b.le(lr.bitPattern); b.le(eps.bitPattern); b.le(UInt32(g.count))
        for x in g { b.le(x.bitPattern) }
        b.le(crc32(b))
        return b
    }
}

/// A step log as read: the header, the good records, and why reading stopped early (nil when
/// the file ended cleanly after the last record).
public struct StepLogContents: Sendable {
    public var header: StepLogHeader
    public var records: [StepRecord]
    public var problem: String?
    /// Bytes of the header and the good records: where the next record belongs.
    public var goodBytes: Int
}

public enum StepLog {
    /// Reads `path`, stopping at the first bad record (see StepLogContents.problem). A missing
    /// or unusable header is an error.
    public static func read(path: String) throws -> StepLogContents {
        try parse(Dataset.readFile(path), file: path)
    }

    public static func parse(_ b: [UInt8], file: String) throws -> StepLogContents {
        let (header, start) = try StepLogHeader.parse(b, file: file)
        var out = StepLogContents(header: header, records: [], problem: nil, goodBytes: start)
        var o = start
        while o < b.count {
            let n = out.records.count
            let last = out.records.last.map { "step \($0.step)" } ?? "the header"
            func stop(_ why: String) -> StepLogContents {
                out.problem = "\(file): record \(n) at byte \(o): \(why); stopping after \(last) (\(n) good records)"
                return out
            }
            guard b.count - o >= 32 else { return stop("truncated (\(b.count - o) bytes left of a record)") }
            let q = Int(b.u32(o + 24))
            guard (1...256).contains(q) else { return stop("corrupted (q = \(q))") }
            let size = 32 + 4 * q
            guard b.count - o >= size else { return stop("truncated (\(b.count - o) of \(size) bytes)") }
            guard crc32(b[o..<(o + size - 4)]) == b.u32(o + size - 4) else { return stop("checksum mismatch (corrupted)") }
            let r = StepRecord(seed: b.u64(o), step: b.u64(o + 8), lr: Float(bitPattern: b.u32(o + 16)),
                               eps: Float(bitPattern: b.u32(o + 20)),
                               g: (0..<q).map { Float(bitPattern: b.u32(o + 28 + 4 * $0)) })
            if let prev = out.records.last, r.step != prev.step &+ 1 {
                return stop("step \(r.step) does not follow step \(prev.step)")
            }
            out.records.append(r)
            o += size
            out.goodBytes = o
        }
        return out
    }

    /// Rebuilds an adapter: a copy of `initial` with the log's records applied in order, as
    /// training applied them (bit-exact). An initial adapter saved by a trainer carries its step
    /// (prge.train.step): records before it are skipped, so an old adapter plus the log's tail
    /// is a checkpoint. Refuses a log for another adapter shape or RNG, or one that starts after
    /// the adapter's step. The result's prge.train.step is the step after the last record.
    public static func replay(initial: LoRAAdapter, log: StepLogContents, pool: ThreadPool? = nil) throws -> LoRAAdapter {
        if let why = log.header.mismatch(initial) { throw PRGEError(.state, "cannot replay: \(why)") }
        let start = trainedSteps(initial) ?? log.records.first?.step ?? 0
        let records = log.records.drop { $0.step < start }
        if let first = records.first, first.step != start {
            throw PRGEError(.state, "cannot replay: the adapter is at step \(start) but the log starts at step \(first.step)")
        }
        let out = try initial.copied()
        for r in records { applyUpdate(r, to: out, pool: pool) }
        out.metadata = out.metadata.filter { $0.0 != stepKey } + [(stepKey, .uint64(start + UInt64(records.count)))]
        return out
    }

    /// Adapter metadata: the number of steps that made the adapter.
    static let stepKey = "prge.train.step"

    /// The adapter's prge.train.step, if it has one.
    public static func trainedSteps(_ a: LoRAAdapter) -> UInt64? {
        guard case .uint64(let s)? = a.metadata.first(where: { $0.0 == stepKey })?.1 else { return nil }
        return s
    }
}

/// Appends records to a step log file. Durability: each record is one write(2) to an O_APPEND
/// descriptor; `sync()` (fsync) is called by the trainer before every checkpoint and at the end
/// of every run, so a checkpoint is never ahead of the durable log.
public final class StepLogWriter {
    public let path: String
    private var fd: Int32

    /// Opens `path` for a trainer that has done `step` steps with `header`'s adapter: keeps the
    /// file's good records of earlier steps (dropping later ones, left by a run that went past
    /// its last checkpoint) or starts the file anew when `step` is 0 or the file is absent.
    /// A file for another model or adapter shape, or one whose records stop short of `step`,
    /// is an error: appending would make a log that cannot be replayed.
    public init(path: String, header: StepLogHeader, step: UInt64) throws {
        self.path = path
        var keep = 0
        if step > 0, access(path, F_OK) == 0 {
            let c = try StepLog.read(path: path)
            guard c.header == header else {
                throw PRGEError(.state, "\(path): the step log was made for another model or adapter shape; move it away or pick another step_log path")
            }
            let kept = c.records.prefix { $0.step < step }
            if let last = kept.last, last.step != step - 1 {
                throw PRGEError(.state, "\(path): the step log ends at step \(last.step)\(c.problem.map { " (\($0))" } ?? ""), but the trainer is at step \(step): records are missing")
            }
            keep = kept.isEmpty ? 0 : header.bytes.count + kept.reduce(0) { $0 + 32 + 4 * $1.g.count }
        }
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw PRGEError.io("cannot open step log '\(path)': \(String(cString: strerror(errno)))") }
        do {
            guard ftruncate(fd, off_t(keep)) == 0 else { throw PRGEError.io("cannot truncate step log '\(path)': \(String(cString: strerror(errno)))") }
            if keep == 0 { try write(header.bytes) }
            try sync()
        } catch {
            close(fd)
            throw error
        }
    }

    deinit { close(fd) }

    public func append(_ r: StepRecord) throws { try write(r.logBytes) }

    public func sync() throws {
        guard fsync(fd) == 0 else { throw PRGEError.io("cannot fsync step log '\(path)': \(String(cString: strerror(errno)))") }
    }

    private func write(_ bytes: [UInt8]) throws {
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress!, $0.count) }
        guard n == bytes.count else {
            throw PRGEError.io("cannot append to step log '\(path)': \(n < 0 ? String(cString: strerror(errno)) : "short write")")
        }
    }
}

// ---- model identity --------------------------------------------------------------------------

/// SHA-256 of the file at `path`, computed once per (device, inode, size, mtime) per process:
/// a model file is hundreds of MB and every trainer with a step log needs its hash.
public func fileSHA256(path: String) throws -> [UInt8] {
    var st = stat()
    guard stat(path, &st) == 0 else { throw PRGEError.io("cannot stat '\(path)': \(String(cString: strerror(errno)))") }
    let key = "\(st.st_dev):\(st.st_ino):\(st.st_size):\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
    if let h = shaCache.withLock({ $0[key] }) { return h }
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw PRGEError.io("cannot open '\(path)': \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var sha = SHA256()
    var buf = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n >= 0 else { throw PRGEError.io("cannot read '\(path)': \(String(cString: strerror(errno)))") }
        if n == 0 { break }
        buf.withUnsafeBytes { sha.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
    }
    let h = sha.finish()
    shaCache.withLock { $0[key] = h }
    return h
}

private let shaCache = Mutex<[String: [UInt8]]>([:])

// ---- checksums -------------------------------------------------------------------------------

/// CRC-32 (IEEE 802.3 / zlib: reflected polynomial 0xEDB88320, initial and final XOR 0xFFFFFFFF).
public func crc32<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
    var c: UInt32 = 0xFFFF_FFFF
    for b in bytes { c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
    return c ^ 0xFFFF_FFFF
}

private let crcTable: [UInt32] = (0..<256).map { n in
    var c = UInt32(n)
    for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
    return c
}

/// SHA-256 (FIPS 180-4), streaming.
public struct SHA256 {
    private var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
    private var pending: [UInt8] = []   // < 64 bytes not yet compressed
    private var length: UInt64 = 0      // bytes seen

    public init() {}

    public mutating func update(_ data: UnsafeRawBufferPointer) {
        length &+= UInt64(data.count)
        var i = 0
        if !pending.isEmpty {
            let take = min(64 - pending.count, data.count)
            pending += data[0..<take]
            i = take
            if pending.count == 64 { pending.withUnsafeBytes { compress($0.baseAddress!) }; pending = [] }
        }
        while data.count - i >= 64 { compress(data.baseAddress! + i); i += 64 }
        if i < data.count { pending += data[i...] }
    }

    public mutating func update<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        Array(bytes).withUnsafeBytes { update($0) }
    }

    /// The 32-byte digest.
    public mutating func finish() -> [UInt8] {
        let bits = length &* 8
        var tail: [UInt8] = [0x80] + [UInt8](repeating: 0, count: (119 - Int(length % 64)) % 64)
        for k in (0..<8).reversed() { tail.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt64(k)))) }
        update(tail)
        return h.flatMap { w in (0..<4).map { UInt8(truncatingIfNeeded: w >> (24 - 8 * UInt32($0))) } }
    }

    public static func hash<C: Collection>(_ bytes: C) -> [UInt8] where C.Element == UInt8 {
        var s = SHA256()
        s.update(bytes)
        return s.finish()
    }

    // Pointers instead of array subscripts: debug builds (the tests) hash a 100 MB model, and
    // unoptimised array access would make that minutes instead of seconds.
    private mutating func compress(_ p: UnsafeRawPointer) {
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { wb in
            let w = wb.baseAddress!
            for t in 0..<16 { w[t] = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 4 * t, as: UInt32.self)) }
            for t in 16..<64 {
                let a = w[t - 15], b = w[t - 2]
                let s0 = ((a >> 7) | (a << 25)) ^ ((a >> 18) | (a << 14)) ^ (a >> 3)
                let s1 = ((b >> 17) | (b << 15)) ^ ((b >> 19) | (b << 13)) ^ (b >> 10)
                w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
            }
            sha256K.withUnsafeBufferPointer { kb in
                let k = kb.baseAddress!
                h.withUnsafeMutableBufferPointer { hb in
                    let h = hb.baseAddress!
                    var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7]
                    for t in 0..<64 {
                        let s1 = ((e >> 6) | (e << 26)) ^ ((e >> 11) | (e << 21)) ^ ((e >> 25) | (e << 7))
                        let t1 = hh &+ s1 &+ ((e & f) ^ (~e & g)) &+ k[t] &+ w[t]
                        let s0 = ((a >> 2) | (a << 30)) ^ ((a >> 13) | (a << 19)) ^ ((a >> 22) | (a << 10))
                        let t2 = s0 &+ ((a & b) ^ (a & c) ^ (b & c))
                        hh = g; g = f; f = e; e = d &+ t1; d = c; c = b; b = a; a = t1 &+ t2
                    }
                    h[0] &+= a; h[1] &+= b; h[2] &+= c; h[3] &+= d; h[4] &+= e; h[5] &+= f; h[6] &+= g; h[7] &+= hh
                }
            }
        }
    }
}

private let sha256K: [UInt32] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]

// ---- little-endian bytes ---------------------------------------------------------------------

extension [UInt8] {
    mutating func le<T: FixedWidthInteger>(_ v: T) { Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) } }
    func u32(_ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(self[o + $1]) << (8 * UInt32($1)) } }
    func u64(_ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(self[o + $1]) << (8 * UInt64($1)) } }
}
