// prge_model: load/free, metadata, tokenize/detokenize. Thin: validate, call the engine, copy out.
import PRGE
#if canImport(Glibc)
import Glibc
#endif

/// What a prge_model handle refers to: the engine's model plus the caller's run settings, and
/// the one Context (thread pool + scratch) that runs this handle's forwards. A Context serves one
/// caller at a time, so every use goes through `withContext`, which holds the handle's mutex:
/// prge_forward / classify / generate calls on one model run one after another.
final class ModelHandle {
    let model: Model
    let threads: Int
    let mode: NumericMode
    private let context: Context
    private let lock: UnsafeMutablePointer<pthread_mutex_t>

    init(model: Model, threads: Int, mode: NumericMode) throws {
        self.model = model
        self.threads = threads
        self.mode = mode
        context = try Context(model: model, threads: threads, mode: mode)
        lock = .allocate(capacity: 1)
        pthread_mutex_init(lock, nil)
    }

    deinit {
        pthread_mutex_destroy(lock)
        lock.deallocate()
    }

    /// Runs `body` with this handle's Context, alone.
    @discardableResult
    func withContext<R>(_ body: (Context) throws -> R) rethrows -> R {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return try body(context)
    }
}

// prge_model_params as laid out in prge.h: { int32_t n_threads; int32_t numeric_mode; }.
// Swift cannot see the header, so the layout is written here (as Int32 indices); test_capi.c
// checks the header's offsets.
private let nThreadsField = 0
private let numericModeField = 1

/// PRGE_NUMERIC_* values.
private func numericMode(_ m: Int32) -> NumericMode? {
    switch m {
    case 0: return .fp32
    case 1: return .bf16
    case 2: return .int8
    default: return nil
    }
}

func model(_ h: OpaquePointer?) throws -> ModelHandle {
    try registry.get(h, .model, as: ModelHandle.self)
}

@_cdecl("prge_model_default_params")
public func prge_model_default_params(_ out: UnsafeMutableRawPointer?) -> Int32 {
    capi {
        let p = try required(out?.assumingMemoryBound(to: Int32.self), "params")
        p[nThreadsField] = 0        // all online cores
        p[numericModeField] = 0     // PRGE_NUMERIC_FP32
    }
}

@_cdecl("prge_model_load")
public func prge_model_load(_ path: UnsafePointer<CChar>?, _ params: UnsafeRawPointer?,
                            _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi {
        let out = try required(out, "out")
        out.pointee = nil
        let path = try utf8CString(path, "path")
        var threads = ThreadPool.defaultThreads
        var mode = NumericMode.fp32
        if let params {
            let p = try required(params.assumingMemoryBound(to: Int32.self), "params")
            let n = p[nThreadsField], m = p[numericModeField]
            guard n >= 0, n <= 512 else { throw PRGEError.invalid("params.n_threads \(n) must be in 0...512 (0 = all cores)") }
            guard let nm = numericMode(m) else { throw PRGEError.invalid("params.numeric_mode \(m) is not a PRGE_NUMERIC_* value") }
            if n > 0 { threads = Int(n) }
            mode = nm
        }
        let h = try ModelHandle(model: try Model(path: path), threads: threads, mode: mode)
        out.pointee = registry.insert(h, .model)
    }
}

@_cdecl("prge_model_free")
public func prge_model_free(_ h: OpaquePointer?) -> Int32 {
    capi { if h != nil { try registry.remove(h, .model) } }
}

/// One hyper-parameter into the caller's size_t.
private func query(_ h: OpaquePointer?, _ out: UnsafeMutablePointer<Int>?, _ value: (LlamaConfig) -> Int) -> Int32 {
    capi {
        let m = try model(h)
        try required(out, "out").pointee = value(m.model.config)
    }
}

@_cdecl("prge_model_n_vocab")
public func prge_model_n_vocab(_ h: OpaquePointer?, _ out: UnsafeMutablePointer<Int>?) -> Int32 { query(h, out) { $0.nVocab } }

@_cdecl("prge_model_n_ctx_train")
public func prge_model_n_ctx_train(_ h: OpaquePointer?, _ out: UnsafeMutablePointer<Int>?) -> Int32 { query(h, out) { $0.nCtxTrain } }

@_cdecl("prge_model_n_layer")
public func prge_model_n_layer(_ h: OpaquePointer?, _ out: UnsafeMutablePointer<Int>?) -> Int32 { query(h, out) { $0.nLayer } }

@_cdecl("prge_model_n_embd")
public func prge_model_n_embd(_ h: OpaquePointer?, _ out: UnsafeMutablePointer<Int>?) -> Int32 { query(h, out) { $0.nEmbd } }

@_cdecl("prge_model_architecture")
public func prge_model_architecture(_ h: OpaquePointer?, _ buf: UnsafeMutablePointer<CChar>?, _ size: Int,
                                   _ len: UnsafeMutablePointer<Int>?) -> Int32 {
    capi { try writeText(try model(h).model.config.arch, buf, size: size, length: len) }
}

@_cdecl("prge_model_meta_str")
public func prge_model_meta_str(_ h: OpaquePointer?, _ key: UnsafePointer<CChar>?, _ buf: UnsafeMutablePointer<CChar>?,
                                _ size: Int, _ len: UnsafeMutablePointer<Int>?) -> Int32 {
    capi {
        let m = try model(h)
        let key = try utf8CString(key, "key")
        guard let v = m.model.gguf[key] else { throw PRGEError.invalid("no metadata key '\(key)'") }
        try writeText(try text(v, key), buf, size: size, length: len)
    }
}

/// A scalar metadata value as text (see prge_model_meta_str in prge.h).
private func text(_ v: GGUFValue, _ key: String) throws -> String {
    switch v {
    case .string(let s): return s
    case .bool(let b): return b ? "true" : "false"
    case .float32(let f): return f.description
    case .float64(let d): return d.description
    case .uint64(let u): return u.description   // may not fit in Int, so not through .int
    case .array(_, let a): throw PRGEError.invalid("metadata '\(key)' is an array of \(a.count) values, not a scalar")
    default:
        guard let i = v.int else { throw PRGEError(.internal, "metadata '\(key)' has an unexpected type \(v.type)") }
        return i.description
    }
}

@_cdecl("prge_tokenize")
public func prge_tokenize(_ h: OpaquePointer?, _ text: UnsafePointer<CChar>?, _ textLen: Int,
                          _ addSpecial: Int32, _ parseSpecial: Int32,
                          _ out: UnsafeMutablePointer<Int32>?, _ cap: Int, _ nOut: UnsafeMutablePointer<Int>?) -> Int32 {
    capi {
        let m = try model(h)
        let s = try utf8Text(text, length: textLen, "text")
        let ids = try output(out, count: cap, "out")
        let n = try required(nOut, "n_out")
        let tokens = m.model.tokenizer.encode(s, addSpecial: addSpecial != 0, parseSpecial: parseSpecial != 0)
        n.pointee = tokens.count
        guard tokens.count <= ids.count else {
            throw PRGEError(.bufferTooSmall, "token buffer holds \(ids.count) ids; the text has \(tokens.count)")
        }
        _ = ids.initialize(from: tokens)
    }
}

@_cdecl("prge_detokenize")
public func prge_detokenize(_ h: OpaquePointer?, _ tokens: UnsafePointer<Int32>?, _ nTokens: Int,
                            _ buf: UnsafeMutablePointer<CChar>?, _ size: Int, _ len: UnsafeMutablePointer<Int>?) -> Int32 {
    capi {
        let m = try model(h)
        let ids = try input(tokens, count: nTokens, "tokens")
        let nVocab = m.model.config.nVocab
        if let i = ids.firstIndex(where: { $0 < 0 || Int($0) >= nVocab }) {
            throw PRGEError.invalid("tokens[\(i)] = \(ids[i]) is outside the vocabulary [0, \(nVocab))")
        }
        try writeText(m.model.tokenizer.decode(Array(ids)), buf, size: size, length: len)
    }
}
