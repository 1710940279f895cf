import Testing
@testable import PRGE

/// JSON parsing (json-c), typed access with paths, and serialization.
@Suite struct JSONTests {
    static func message(_ body: () throws -> Any) -> String? {
        do { _ = try body(); return nil } catch let e as PRGEError { return e.message } catch { return "\(error)" }
    }

    @Test func parsesValuesInDocumentOrder() throws {
        let v = try JSONValue.parse(#"{"z": 1, "a": [true, false, null, -2.5e-3, "x\u00e9\n"], "m": {"k": {}}}"#)
        guard case .object(let members) = v else { Issue.record("not an object"); return }
        #expect(members.map(\.0) == ["z", "a", "m"])
        #expect(v["z"] == .number(1))
        #expect(v["a"] == .array([.bool(true), .bool(false), .null, .number(-0.0025), .string("xé\n")]))
        #expect(v["m"]?["k"] == .object([]))
        #expect(try JSONValue.parse(" 42 ") == .number(42))
        #expect(try JSONValue.parse("\"\"") == .string(""))
        #expect(try JSONValue.parse("9007199254740992") == .number(9_007_199_254_740_992))
        #expect(try JSONValue.parse("{\"a\": 1, \"a\": 2}")["a"] == .number(2), "json-c keeps the last duplicate")
    }

    @Test func syntaxErrorsNamePosition() {
        let m = Self.message { try JSONValue.parse("{\n  \"a\": 1,\n  \"b\": }", source: "cfg.json") }
        #expect(m?.hasPrefix("cfg.json: JSON syntax error at line 3, column 8") == true, "\(m ?? "no error")")
        for (text, what) in [("", "end of input"), ("{\"a\": 1", "end of input"), ("[1,]", "line 1, column 4"),
                             ("{\"a\": 1} x", "line 1, column 10"), ("[NaN]", "not finite"), ("[1e400]", "not finite"),
                             ("[Infinity]", "not finite"), ("[18446744073709551615]", "2^53"), ("'x'", "syntax error"),
                             ("[01]", "syntax error"), ("[1]\u{0}", "NUL byte"), ("[tru]", "syntax error")] {
            let m = Self.message { try JSONValue.parse(text) }
            #expect(m?.contains(what) == true, "\(text.debugDescription): \(m ?? "no error")")
        }
        #expect(Self.message { try JSONValue.parse("{\"a\": [1, NaN]}") }?.contains("$.a[1]") == true)
    }

    @Test func typedAccessorsNameThePath() throws {
        let root = JSONNode(try JSONValue.parse(#"{"trainer": {"lr": "fast", "steps": 2.5, "q": 4, "seed": 7, "tags": ["a", 3]}, "my key": true}"#))
        let trainer = try root.require("trainer")
        #expect(Self.message { try trainer.require("lr").double() } == "$.trainer.lr: expected number, got string")
        #expect(Self.message { try trainer.require("steps").int() } == "$.trainer.steps: expected an integer, got 2.5")
        #expect(Self.message { try trainer.require("eps") } == "$.trainer.eps: missing")
        #expect(Self.message { try trainer.require("tags").array()[1].string() } == "$.trainer.tags[1]: expected string, got number")
        #expect(Self.message { try trainer.require("q").int(in: 1...2) } == "$.trainer.q: 4 is out of range 1...2")
        #expect(Self.message { try root.require("my key").double() } == #"$["my key"]: expected number, got boolean"#)
        #expect(Self.message { try root.require("my key").field("x") as Any } == #"$["my key"]: expected object, got boolean"#)
        #expect(try trainer.require("q").int() == 4 && trainer.require("seed").uint64() == 7)
        #expect(try trainer.field("absent") == nil)
        let src = JSONNode(try JSONValue.parse(#"{"x": null}"#), source: "a.json")
        #expect(try src.field("x") == nil, "null counts as absent")
        #expect(Self.message { try src.require("x") } == "a.json: $.x: missing")
    }

    @Test func unknownKeysAreRefused() throws {
        let node = JSONNode(try JSONValue.parse(#"{"trainer": {"lr": 1, "lrr": 2}}"#), source: "c.json")
        #expect(Self.message { try node.require("trainer").checkKeys(["lr", "eps"]) } == "c.json: $.trainer.lrr: unknown key (allowed: lr, eps)")
        try node.checkKeys(["trainer"])
    }

    @Test func serializesRoundTrippably() throws {
        let v = JSONValue.object([
            ("n", .array([.number(3), .number(-0.0), .number(0.1), .number(1e-5), .number(1e300), .number(-2.5),
                          .number(9_007_199_254_740_994), .number(123456789.125)])),
            ("s", .string("quote \" backslash \\ nl \n tab \t cr \r bell \u{07} nul \u{0} é 🦙")),
            ("e", .object([])), ("b", .bool(false)), ("z", .null),
        ])
        let text = v.serialized
        #expect(text.hasPrefix(#"{"n":[3,-0.0,0.1,1e-05,1e+300,-2.5,"#))
        #expect(text.contains(#""quote \" backslash \\ nl \n tab \t cr \r bell \u0007 nul \u0000 é 🦙""#))
        #expect(try JSONValue.parse(text) == v)
        #expect(JSONValue.number(.nan).serialized == "null" && JSONValue.number(.infinity).serialized == "null")
        #expect(JSONValue.float(0.001).serialized == "0.001" && JSONValue.float(5e-5).serialized == "5e-05")
        #expect(Float(try JSONNode(try JSONValue.parse(JSONValue.float(0.1).serialized)).double()) == Float(0.1))
    }
}
