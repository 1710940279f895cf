// The handle registry. A handle given to C is an opaque token (a never-reused id), not an
// address, so nothing the host passes is ever dereferenced before it is found here: NULL,
// freed handles, handles of another type and made-up values are all caught, not crashed on.
// A call holds a strong reference to the object while it runs, so freeing a handle on one
// thread while another thread is inside a call on it is safe.
import PRGE
#if canImport(Glibc)
import Glibc
#endif

/// The C type each kind of handle has in prge.h (named in error messages).
enum HandleKind: String {
    case model = "prge_model"
    case adapter = "prge_adapter"
    case trainer = "prge_trainer"
}

final class Registry: @unchecked Sendable {
    private let lock: UnsafeMutablePointer<pthread_mutex_t>
    private var live: [UInt: (kind: HandleKind, object: AnyObject)] = [:]
    // 64-bit ids never wrap in practice; 0 is left out because it would read as NULL.
    private var nextID: UInt = 1

    init() {
        lock = .allocate(capacity: 1)
        pthread_mutex_init(lock, nil)
    }

    private func locked<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return try body()
    }

    func insert(_ object: AnyObject, _ kind: HandleKind) -> OpaquePointer {
        locked {
            let id = nextID
            nextID += 1
            live[id] = (kind, object)
            return OpaquePointer(bitPattern: id)!
        }
    }

    /// The live object behind `handle`, which must be of `kind`.
    func get<T: AnyObject>(_ handle: OpaquePointer?, _ kind: HandleKind, as _: T.Type) throws -> T {
        let object = try locked { try entry(handle, kind).object }
        guard let typed = object as? T else {
            throw PRGEError(.internal, "\(kind.rawValue) handle \(handle!) holds a \(type(of: object))")
        }
        return typed
    }

    /// Forgets `handle`. The object itself goes when the last call using it returns; the
    /// closure hands it out of the lock so its release (a model unmaps its file) runs unlocked.
    func remove(_ handle: OpaquePointer?, _ kind: HandleKind) throws {
        _ = try locked { () throws -> AnyObject in
            let e = try entry(handle, kind)
            live[UInt(bitPattern: handle)] = nil
            return e.object
        }
    }

    private func entry(_ handle: OpaquePointer?, _ kind: HandleKind) throws -> (kind: HandleKind, object: AnyObject) {
        guard let handle else { throw PRGEError.invalid("\(kind.rawValue) handle is NULL") }
        guard let e = live[UInt(bitPattern: handle)] else {
            throw PRGEError.invalid("\(kind.rawValue) handle \(handle) is not live: already freed, or not made by prge")
        }
        guard e.kind == kind else {
            throw PRGEError.invalid("handle \(handle) is a \(e.kind.rawValue), not a \(kind.rawValue)")
        }
        return e
    }
}

let registry = Registry()
