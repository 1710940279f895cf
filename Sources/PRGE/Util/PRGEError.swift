// The one error type of the engine. Every failure the C ABI reports is one of these:
// a code the host can branch on and a message a person can read.
public struct PRGEError: Error, CustomStringConvertible, Equatable {
    /// Mirrors `prge_status` in Include/prge.h (same numbers).
    public enum Code: Int32, Sendable {
        case invalidArgument = 1   // NULL, wrong size, out-of-range value from the caller
        case io = 2                // open/read/write/fsync/rename failed
        case format = 3            // a file's bytes are malformed (GGUF, JSON, JSONL)
        case unsupported = 4       // valid but not implemented (architecture, tensor type, ...)
        case outOfMemory = 5       // an allocation or a size limit was refused
        case bufferTooSmall = 6    // caller-owned output buffer is too small
        case state = 7             // call not valid in the object's current state
        case cancelled = 8         // a progress callback asked to stop
        case `internal` = 9        // a bug of ours; never expected
    }
    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }

    public static func invalid(_ m: String) -> PRGEError { PRGEError(.invalidArgument, m) }
    public static func format(_ m: String) -> PRGEError { PRGEError(.format, m) }
    public static func io(_ m: String) -> PRGEError { PRGEError(.io, m) }
    public static func unsupported(_ m: String) -> PRGEError { PRGEError(.unsupported, m) }
}
