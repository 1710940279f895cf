import CJSONC

// JSON for configs, task files, JSONL data and --json / log output. json-c does the parsing
// (strict mode); this file turns its tree into a Swift value, gives typed accessors whose errors
// name the JSON path ("$.trainer.lr: expected number, got string"), and serializes.
//
// Parsing rules beyond json-c's strict mode: trailing text after the value, NUL bytes,
// non-finite numbers (json-c takes NaN, Infinity and 1e400) and integers beyond ±2^53 (which a
// Double cannot hold exactly) are errors. A key repeated in one object keeps its last value
// (json-c's behaviour; it does not report duplicates).

public enum JSONValue: Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])   // in document order

    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .number: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }

    /// The member `key` of an object (nil for a missing key or a non-object).
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.last { $0.0 == key }?.1
    }

    /// A Float as the shortest decimal that reads back as the same Float ("0.001", not
    /// "0.0010000000474974513"), so logs stay readable and exact.
    public static func float(_ f: Float) -> JSONValue { .number(Double(f.description) ?? Double(f)) }
}

extension JSONValue: Equatable {
    public static func == (l: JSONValue, r: JSONValue) -> Bool {
        switch (l, r) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.number(let a), .number(let b)): return a == b
        case (.string(let a), .string(let b)): return a == b
        case (.array(let a), .array(let b)): return a == b
        case (.object(let a), .object(let b)): return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }
}

// ---- parsing ---------------------------------------------------------------------------------

extension JSONValue {
    /// Integers up to this magnitude are exact in a Double.
    static let maxExactInteger = 9_007_199_254_740_992.0   // 2^53

    /// Parses one JSON document. `source` names it in errors ("config.json", "train.jsonl:12").
    public static func parse(_ text: String, source: String = "JSON") throws -> JSONValue {
        var bytes = Array(text.utf8)
        return try parse(bytes: &bytes, source: source)
    }

    /// Parses one JSON document held in `bytes` (a NUL is appended for json-c and removed).
    public static func parse(bytes: inout [UInt8], source: String = "JSON") throws -> JSONValue {
        if let nul = bytes.firstIndex(of: 0) { throw syntaxError(source, bytes, nul, "NUL byte") }
        guard let tok = json_tokener_new() else { throw PRGEError(.outOfMemory, "\(source): cannot allocate a JSON tokener") }
        defer { json_tokener_free(tok) }
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT)
        bytes.append(0)   // json-c finishes a top-level number only when it sees a terminator
        defer { bytes.removeLast() }
        let obj = bytes.withUnsafeBufferPointer { buf in
            buf.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buf.count) {
                json_tokener_parse_ex(tok, $0, Int32(clamping: buf.count))
            }
        }
        defer { if obj != nil { json_object_put(obj) } }
        let end = json_tokener_get_parse_end(tok)
        let err = json_tokener_get_error(tok)
        guard let obj, err == json_tokener_success else {
            let what = err == json_tokener_continue || end >= bytes.count - 1
                ? "unexpected end of input" : String(cString: json_tokener_error_desc(err))
            throw syntaxError(source, bytes, min(end, bytes.count - 1), what)
        }
        if let extra = bytes[end...].firstIndex(where: { !isSpace($0) && $0 != 0 }) {
            throw syntaxError(source, bytes, extra, "unexpected text after the JSON value")
        }
        return try convert(obj, "$", source)
    }

    private static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 }

    /// "source: line L, column C: what".
    private static func syntaxError(_ source: String, _ bytes: [UInt8], _ offset: Int, _ what: String) -> PRGEError {
        let before = bytes[..<offset]
        let line = before.reduce(1) { $1 == 0x0A ? $0 + 1 : $0 }
        let column = offset - (before.lastIndex(of: 0x0A).map { $0 + 1 } ?? 0) + 1
        return PRGEError.format("\(source): JSON syntax error at line \(line), column \(column) (byte \(offset)): \(what)")
    }

    private static func convert(_ o: OpaquePointer?, _ path: String, _ source: String) throws -> JSONValue {
        switch json_object_get_type(o) {
        case json_type_null:
            return .null
        case json_type_boolean:
            return .bool(json_object_get_boolean(o) != 0)
        case json_type_int:
            // json-c keeps integers as int64/uint64, clamping beyond; anything over 2^53 is out.
            // Compared as an integer: as a Double, 2^53 + 1 would round to 2^53 and pass.
            let i = json_object_get_int64(o)
            guard i.magnitude <= 1 << 53 else {
                throw PRGEError.format("\(source): \(path): integer \(String(cString: json_object_to_json_string(o))) is beyond ±2^53 and cannot be held exactly")
            }
            return .number(Double(i))
        case json_type_double:
            let d = json_object_get_double(o)
            guard d.isFinite else { throw PRGEError.format("\(source): \(path): number is not finite") }
            return .number(d)
        case json_type_string:
            let n = Int(json_object_get_string_len(o))
            let p = UnsafeRawPointer(json_object_get_string(o)!)
            return .string(String(decoding: UnsafeRawBufferPointer(start: p, count: n), as: UTF8.self))
        case json_type_array:
            let n = json_object_array_length(o)
            var items: [JSONValue] = []
            items.reserveCapacity(n)
            for i in 0..<n { items.append(try convert(json_object_array_get_idx(o, i), "\(path)[\(i)]", source)) }
            return .array(items)
        case json_type_object:
            var members: [(String, JSONValue)] = []
            var it = json_object_iter_begin(o)
            var end = json_object_iter_end(o)
            while json_object_iter_equal(&it, &end) == 0 {
                let key = String(cString: json_object_iter_peek_name(&it))
                members.append((key, try convert(json_object_iter_peek_value(&it), JSONNode.child(path, key), source)))
                json_object_iter_next(&it)
            }
            return .object(members)
        default:
            throw PRGEError(.internal, "\(source): \(path): unknown json-c type")
        }
    }
}

// ---- serializing -----------------------------------------------------------------------------

extension JSONValue {
    /// Compact JSON text. Integral numbers up to 2^53 print without a fraction ("3", not "3.0");
    /// others print as the shortest decimal that reads back as the same Double.
    public var serialized: String {
        var out = ""
        write(to: &out)
        return out
    }

    public func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let d): out += Self.format(d)
        case .string(let s): Self.writeString(s, to: &out)
        case .array(let items):
            out += "["
            for (i, v) in items.enumerated() {
                if i > 0 { out += "," }
                v.write(to: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (i, (k, v)) in members.enumerated() {
                if i > 0 { out += "," }
                Self.writeString(k, to: &out)
                out += ":"
                v.write(to: &out)
            }
            out += "}"
        }
    }

    /// Non-finite numbers have no JSON spelling: they print as null.
    static func format(_ d: Double) -> String {
        guard d.isFinite else { return "null" }
        if d == 0 && d.sign == .minus { return "-0.0" }
        if d == d.rounded(), abs(d) <= maxExactInteger { return String(Int64(d)) }
        return d.description   // Swift's shortest round-trip form, e.g. "0.1", "5e-05", "1e+300"
    }

    static func writeString(_ s: String, to out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case _ where u.value < 0x20:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        out += "\""
    }
}

// ---- typed access with paths -----------------------------------------------------------------

/// A value and where it sits in its document, for typed reads whose errors say where:
/// `config.json: $.trainer.lr: expected number, got string`.
public struct JSONNode: Sendable {
    public let value: JSONValue
    public let path: String
    public let source: String?

    public init(_ value: JSONValue, source: String? = nil, path: String = "$") {
        self.value = value
        self.source = source
        self.path = path
    }

    public func error(_ what: String) -> PRGEError {
        PRGEError.format((source.map { "\($0): " } ?? "") + "\(path): \(what)")
    }

    private func mismatch(_ expected: String) -> PRGEError { error("expected \(expected), got \(value.typeName)") }

    public var isNull: Bool { if case .null = value { return true }; return false }

    /// The member `key`, or nil when it is missing or null. Throws if this is not an object.
    public func field(_ key: String) throws -> JSONNode? {
        let m = try object()
        guard let v = m.last(where: { $0.0 == key })?.1, !v.isNull else { return nil }
        return v
    }

    /// True when the member `key` is present and null: the way a config unsets an optional whose
    /// default is a value (`field` cannot tell null from missing).
    public func isNull(_ key: String) throws -> Bool {
        try object().last(where: { $0.0 == key })?.1.isNull ?? false
    }

    /// The member `key`, which must be present and not null.
    public func require(_ key: String) throws -> JSONNode {
        guard let v = try field(key) else { throw JSONNode(.null, source: source, path: Self.child(path, key)).error("missing") }
        return v
    }

    /// Refuses members outside `allowed`, so a misspelt option is an error, not a silent default.
    public func checkKeys(_ allowed: [String]) throws {
        for (key, v) in try object() where !allowed.contains(key) {
            throw v.error("unknown key (allowed: \(allowed.joined(separator: ", ")))")
        }
    }

    public func object() throws -> [(String, JSONNode)] {
        guard case .object(let m) = value else { throw mismatch("object") }
        return m.map { ($0.0, JSONNode($0.1, source: source, path: Self.child(path, $0.0))) }
    }

    public func array() throws -> [JSONNode] {
        guard case .array(let a) = value else { throw mismatch("array") }
        return a.enumerated().map { JSONNode($0.1, source: source, path: "\(path)[\($0.0)]") }
    }

    public func string() throws -> String {
        guard case .string(let s) = value else { throw mismatch("string") }
        return s
    }

    public func bool() throws -> Bool {
        guard case .bool(let b) = value else { throw mismatch("boolean") }
        return b
    }

    public func double() throws -> Double {
        guard case .number(let d) = value else { throw mismatch("number") }
        return d
    }

    /// A number that fits a Float without overflowing to infinity.
    public func float() throws -> Float {
        let d = try double()
        guard Float(d).isFinite else { throw error("\(d) is out of Float range") }
        return Float(d)
    }

    public func int() throws -> Int {
        let d = try double()
        guard d == d.rounded(), let i = Int(exactly: d) else { throw error("expected an integer, got \(d)") }
        return i
    }

    public func int(in range: ClosedRange<Int>) throws -> Int {
        let i = try int()
        guard range.contains(i) else { throw error("\(i) is out of range \(range.lowerBound)...\(range.upperBound)") }
        return i
    }

    /// A non-negative integer (≤ 2^53, the limit of exact JSON numbers here).
    public func uint64() throws -> UInt64 {
        let d = try double()
        guard d == d.rounded(), let u = UInt64(exactly: d) else { throw error("expected a non-negative integer, got \(d)") }
        return u
    }

    /// "$.a" + "b" → "$.a.b"; keys that are not plain identifiers are quoted: $.a["x y"].
    static func child(_ path: String, _ key: String) -> String {
        let plain = !key.isEmpty && key.unicodeScalars.allSatisfy { $0 == "_" || ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) }
        if plain { return "\(path).\(key)" }
        var quoted = ""
        JSONValue.writeString(key, to: &quoted)
        return "\(path)[\(quoted)]"
    }
}
