import PRGE
#if canImport(Glibc)
import Glibc
#endif

// What several commands share: the usual options, loading a model, files, output.

enum Common {
    static let model = Option("--model", "-m", value: "FILE", required: true, help: "GGUF model file")
    static let json = Option("--json", help: "print JSON instead of readable text")
    static let threads = Option("--threads", "-t", value: "N", help: "threads (default: all \(ThreadPool.defaultThreads) cores)")
    static let mode = Option("--mode", value: "fp32|bf16|int8", help: "matmul numerics (default fp32: exact f32, the reference)")
    static let parseSpecial = Option("--parse-special", help: "read special-token text such as <|im_start|> as that token")

    /// A context on the model of --model, with --threads and --mode when the command has them.
    static func context(_ a: Arguments) throws -> Context {
        let threads = try a.int(Self.threads.name, default: ThreadPool.defaultThreads, in: 1...512)
        let mode = try a.choice(Self.mode.name, default: NumericMode.fp32)
        return try Context(model: Model(path: a.required(Self.model.name)), threads: threads, mode: mode)
    }

    /// The bytes of a file.
    static func readFile(_ path: String) throws -> [UInt8] {
        guard let f = fopen(path, "rb") else { throw PRGEError.io("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { fclose(f) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, f) }
            out += chunk[..<n]
            if n < chunk.count { break }
        }
        if ferror(f) != 0 { throw PRGEError.io("cannot read \(path): \(String(cString: strerror(errno)))") }
        return out
    }

    // All output goes through write(2) on the two descriptors, unbuffered, so streamed text
    // appears at once and stdout and stderr never need flushing or sharing C's FILE globals.

    /// Raw bytes to stdout: streamed text may end mid-character, the terminal joins it.
    static func write(_ bytes: [UInt8], fd: Int32 = STDOUT_FILENO) {
        bytes.withUnsafeBytes { buf in
            var off = 0
            while off < buf.count {
                let n = Glibc.write(fd, buf.baseAddress! + off, buf.count - off)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }          // a closed pipe: nothing more can be said
                off += n
            }
        }
    }

    static func out(_ text: String) { write(Array(text.utf8)) }
    static func err(_ text: String) { write(Array(text.utf8), fd: STDERR_FILENO) }
    static func printError(_ message: String) { err("prge: error: \(message)\n") }

    /// A token's bytes as a quoted, readable string: valid UTF-8 as is, control characters and
    /// stray bytes (part of a character split across tokens) escaped.
    static func quoted(_ bytes: [UInt8]) -> String {
        var s = "\""
        if let text = String(validating: bytes, as: UTF8.self) {
            for u in text.unicodeScalars {
                switch u {
                case "\"": s += "\\\""
                case "\\": s += "\\\\"
                case "\n": s += "\\n"
                case "\t": s += "\\t"
                case "\r": s += "\\r"
                case _ where u.value < 0x20 || u.value == 0x7F: s += hex(UInt8(u.value))
                default: s.unicodeScalars.append(u)
                }
            }
        } else {
            for b in bytes { s += b >= 0x20 && b < 0x7F && b != 0x22 && b != 0x5C ? String(UnicodeScalar(b)) : hex(b) }
        }
        return s + "\""
    }

    private static func hex(_ b: UInt8) -> String {
        let h = String(b, radix: 16, uppercase: true)
        return "\\x" + (h.count == 1 ? "0" + h : h)
    }

    /// Seconds on a monotonic clock.
    static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }
}
