#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Data files: JSONL, one JSON object per line, turned into examples by a Task.
// A malformed line is an error naming file:line, never skipped: a silently shorter dataset
// would skew every number measured on it. Blank lines are allowed and ignored.

public enum Dataset {
    /// Files larger than this are refused rather than read into memory.
    public static let maxFileBytes = 1 << 30

    /// The examples of a JSONL file under `task`. With `requireLabels` false, rows without
    /// a label give unlabelled examples.
    public static func load(path: String, task: Task, requireLabels: Bool = true) throws -> [Example] {
        var out: [Example] = []
        for row in try readJSONL(path: path) {
            out += try task.examples(from: row, requireLabel: requireLabels)
        }
        return out
    }

    /// Every non-blank line of a JSONL file, parsed; each node's source is "path:line".
    public static func readJSONL(path: String) throws -> [JSONNode] {
        try parseJSONL(try readFile(path), source: path)
    }

    /// Every non-blank line of JSONL bytes (a file, or text a host passed in), parsed; each
    /// node's source is "source:line". CRLF line ends are accepted.
    public static func parseJSONL(_ bytes: [UInt8], source: String) throws -> [JSONNode] {
        var rows: [JSONNode] = []
        for (i, line) in bytes.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() {
            var text = Array(line)
            if text.last == 0x0D { text.removeLast() }
            if text.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            let at = "\(source):\(i + 1)"
            let value = try JSONValue.parse(bytes: &text, source: at)
            guard case .object = value else { throw PRGEError.format("\(at): expected a JSON object, got \(value.typeName)") }
            rows.append(JSONNode(value, source: at))
        }
        return rows
    }

    /// A whole file's bytes.
    static func readFile(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw PRGEError.io("cannot open '\(path)': \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { throw PRGEError.io("'\(path)' is not a regular file") }
        guard st.st_size <= maxFileBytes else { throw PRGEError(.outOfMemory, "'\(path)' is \(st.st_size) bytes, over the \(maxFileBytes)-byte limit") }
        var out = [UInt8](repeating: 0, count: Int(st.st_size))
        var done = 0
        while done < out.count {
            let n = out.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw PRGEError.io("cannot read '\(path)': \(n == 0 ? "file shrank while reading" : String(cString: strerror(errno)))") }
            done += n
        }
        return out
    }
}
