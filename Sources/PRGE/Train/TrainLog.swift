#if canImport(Glibc)
import Glibc
#endif

// The JSONL training log, one object per line, for people and plotting scripts:
//   {"type":"start","step":k,"resumed":bool,"config":{...}}       when the trainer opens the log
//   {"type":"step","step":s,"loss":L,"loss_plus":[..],"loss_minus":[..],"g":[..],"lr":η,"eps":ε,
//    "time":t,"step_seconds":d}                                    after every step
//   {"type":"eval","step":s,"split":"dev","n":n,"loss":L,"accuracy":a,"best":bool,"time":t}
// "step" of a step line is the step's index (0 for the first); of an eval line, the number of
// steps done. "time" is the seconds of training so far (carried over by checkpoints).
// A fresh trainer truncates the file; a resumed one appends (lines after the checkpoint's step
// from the interrupted run stay, followed by the resumed run's own lines for those steps).

final class TrainLog {
    let path: String
    private let fd: Int32

    init(path: String, append: Bool) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0o644)
        guard fd >= 0 else { throw PRGEError.io("cannot open training log '\(path)': \(String(cString: strerror(errno)))") }
    }

    deinit { close(fd) }

    /// Appends `v` as one line, in one write(2).
    func write(_ v: JSONValue) throws {
        var line = v.serialized
        line += "\n"
        let n = line.utf8.withContiguousStorageIfAvailable { Glibc.write(fd, $0.baseAddress!, $0.count) }
            ?? Array(line.utf8).withUnsafeBytes { Glibc.write(fd, $0.baseAddress!, $0.count) }
        guard n == line.utf8.count else {
            throw PRGEError.io("cannot write training log '\(path)': \(n < 0 ? String(cString: strerror(errno)) : "short write")")
        }
    }

    func sync() throws {
        guard fsync(fd) == 0 else { throw PRGEError.io("cannot fsync training log '\(path)': \(String(cString: strerror(errno)))") }
    }
}
