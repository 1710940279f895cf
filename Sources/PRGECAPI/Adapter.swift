// prge_adapter: create (options as JSON), load/save as llama.cpp-layout GGUF, size, free.
import PRGE

/// What a prge_adapter handle refers to. The C API never changes an adapter after it is made
/// (a trainer works on its own copy), so any number of calls may read one concurrently.
final class AdapterHandle {
    let adapter: LoRAAdapter
    /// The base model it was made or loaded for; held so the model's mapping outlives the
    /// adapter whatever order the host frees them in.
    let model: Model

    init(adapter: LoRAAdapter, model: Model) {
        self.adapter = adapter
        self.model = model
    }
}

func adapter(_ h: OpaquePointer?) throws -> AdapterHandle {
    try registry.get(h, .adapter, as: AdapterHandle.self)
}

/// The adapter behind a handle that may be NULL (NULL: the base model), checked against `model`.
func optionalAdapter(_ h: OpaquePointer?, for model: Model) throws -> LoRAAdapter? {
    guard h != nil else { return nil }
    let a = try adapter(h).adapter
    try checkFits(a, model)
    return a
}

/// An adapter may run on any model with the same depth and projection shapes (another load of
/// the same file, say), not only the one it was made for.
func checkFits(_ a: LoRAAdapter, _ model: Model) throws {
    let c = model.config
    guard a.nLayer == c.nLayer else {
        throw PRGEError.invalid("the adapter is for a model with \(a.nLayer) layers; this model has \(c.nLayer)")
    }
    for s in a.slots {
        let (dIn, dOut) = model.shape(s.proj)
        guard s.dIn == dIn, s.dOut == dOut else {
            throw PRGEError.invalid("adapter slot blk.\(s.layer).\(s.proj.ggufName) is \(s.dOut)x\(s.dIn); the model's weight is \(dOut)x\(dIn)")
        }
    }
}

/// Adapter options from a C string argument (NULL or "": the recipe's adapter), parsed by the engine's
/// `LoRAConfig.apply(options:)` (Sources/PRGE/Train/TrainConfig.swift), which a trainer config's
/// "adapter" member goes through too. Errors name the argument and the JSON path.
func loraConfig(options text: String?, source: String) throws -> LoRAConfig {
    var c = Recipe.adapter
    guard let text, !text.isEmpty else { return c }
    try c.apply(options: JSONNode(try JSONValue.parse(text, source: source), source: source))
    return c
}

@_cdecl("prge_adapter_create")
public func prge_adapter_create(_ m: OpaquePointer?, _ options: UnsafePointer<CChar>?,
                                _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi {
        let out = try required(out, "out")
        out.pointee = nil
        let mh = try model(m)
        let text = options == nil ? nil : try utf8CString(options, "json_options")
        let config = try loraConfig(options: text, source: "json_options")
        let c = mh.model.config
        if let layers = config.layers, let bad = layers.first(where: { $0 >= c.nLayer }) {
            throw PRGEError.invalid("json_options: layer \(bad) is out of range: the model has \(c.nLayer) layers (0...\(c.nLayer - 1))")
        }
        let a = try LoRAAdapter(config: config, nLayer: c.nLayer, shape: mh.model.shape)
        out.pointee = registry.insert(AdapterHandle(adapter: a, model: mh.model), .adapter)
    }
}

@_cdecl("prge_adapter_load")
public func prge_adapter_load(_ m: OpaquePointer?, _ path: UnsafePointer<CChar>?,
                              _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi {
        let out = try required(out, "out")
        out.pointee = nil
        let mh = try model(m)
        let path = try utf8CString(path, "path")
        let a = try AdapterFile.load(path: path, model: mh.model.gguf)
        try checkFits(a, mh.model)
        out.pointee = registry.insert(AdapterHandle(adapter: a, model: mh.model), .adapter)
    }
}

@_cdecl("prge_adapter_save")
public func prge_adapter_save(_ h: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> Int32 {
    capi {
        let ah = try adapter(h)
        let path = try utf8CString(path, "path")
        guard !path.isEmpty else { throw PRGEError.invalid("path is empty") }
        try AdapterFile.save(ah.adapter, to: path, architecture: ah.model.config.arch)
    }
}

@_cdecl("prge_adapter_n_params")
public func prge_adapter_n_params(_ h: OpaquePointer?, _ out: UnsafeMutablePointer<Int>?) -> Int32 {
    capi {
        let ah = try adapter(h)
        try required(out, "out").pointee = ah.adapter.trainableCount
    }
}

@_cdecl("prge_adapter_free")
public func prge_adapter_free(_ h: OpaquePointer?) -> Int32 {
    capi { if h != nil { try registry.remove(h, .adapter) } }
}
