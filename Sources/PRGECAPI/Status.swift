// Status codes, the per-thread last error, and the wrapper every entry point runs its body in.
// Nothing in here may trap: this is the boundary between the host's process and our code.
import PRGE
#if canImport(Glibc)
import Glibc
#endif

/// Must equal PRGE_ABI_VERSION in Include/prge.h (the C test checks that they agree).
let abiVersion: Int32 = 1

@_cdecl("prge_abi_version")
public func prge_abi_version() -> Int32 { abiVersion }

/// Names for prge_status values. PRGEError.Code's raw values are the C numbers, so the header's
/// enum, this table and the engine share one numbering (the C test checks every name).
private func statusName(_ s: Int32) -> StaticString {
    if s == 0 { return "ok" }
    switch PRGEError.Code(rawValue: s) {
    case .invalidArgument: return "invalid argument"
    case .io: return "i/o error"
    case .format: return "malformed file"
    case .unsupported: return "unsupported"
    case .outOfMemory: return "out of memory"
    case .bufferTooSmall: return "buffer too small"
    case .state: return "invalid state"
    case .cancelled: return "cancelled"
    case .internal: return "internal error"
    case nil: return "unknown status"
    }
}

@_cdecl("prge_status_string")
public func prge_status_string(_ s: Int32) -> UnsafePointer<CChar> { cString(statusName(s)) }

// The last error is one malloc'd C string per thread, kept under a pthread key whose
// destructor frees it when the thread exits. A Swift global `let` is initialized once,
// thread-safely, on first use. Creating the key fails only if the process has used up all
// pthread keys; then messages are dropped rather than trapping inside the host.
private let lastErrorKey: pthread_key_t? = {
    var key = pthread_key_t()
    return pthread_key_create(&key) { free($0) } == 0 ? key : nil
}()

private let noMessage: StaticString = ""
private let noKeyMessage: StaticString = "prge: no pthread key was left for error messages"

func setLastError(_ message: String) {
    guard let key = lastErrorKey else { return }
    let old = pthread_getspecific(key)
    pthread_setspecific(key, strdup(message))   // strdup may give NULL: then it reads as ""
    free(old)
}

@_cdecl("prge_last_error")
public func prge_last_error() -> UnsafePointer<CChar> {
    guard let key = lastErrorKey else { return cString(noKeyMessage) }
    if let p = pthread_getspecific(key) { return UnsafePointer(p.assumingMemoryBound(to: CChar.self)) }
    return cString(noMessage)
}

/// A StaticString's bytes live in the binary's read-only data: valid forever.
private func cString(_ s: StaticString) -> UnsafePointer<CChar> {
    UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

/// Runs an entry point's body: a thrown PRGEError becomes its status and this thread's
/// message; anything else thrown is our bug and reported as internal.
func capi(_ body: () throws -> Void) -> Int32 {
    do {
        try body()
        return 0
    } catch let e as PRGEError {
        setLastError(e.message)
        return e.code.rawValue
    } catch {
        setLastError("internal error: \(error)")
        return PRGEError.Code.internal.rawValue
    }
}
