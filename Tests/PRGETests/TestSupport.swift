import PRGE

/// Where tests find the reference model and fixtures. The model is fetched by
/// scripts/fetch-model.sh into models/ (never committed); PRGE_MODEL overrides.
enum TestSupport {
    static let repoRoot: String = {
        // #filePath = <repo>/Tests/PRGETests/TestSupport.swift
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }()
    static var modelPath: String {
        if let p = getenv("PRGE_MODEL") { return String(cString: p) }
        return repoRoot + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    }
    static var sharedDir: String { repoRoot + "/../shared" }
    static var fixtures: String { repoRoot + "/Tests/Fixtures" }

    /// The reference model, loaded once per test process.
    nonisolated(unsafe) static var _file: GGUFFile?
    static func modelFile() throws -> GGUFFile {
        if let f = _file { return f }
        let f = try GGUFFile(path: modelPath)
        _file = f
        return f
    }
}

#if canImport(Glibc)
import Glibc
#endif
