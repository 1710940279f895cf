import Testing
@testable import PRGE
#if canImport(Glibc)
import Glibc
#endif

/// Tasks and JSONL data: every shipped dev file loads under its task, the templates render the
/// documented prompts, label words are single tokens of the reference tokenizer, and bad input
/// is reported with file:line and JSON path.
@Suite struct TaskTests {
    static func dataPath(_ task: String, _ split: String = "dev") -> String { "\(TestSupport.sharedDir)/data/\(task)/\(split).jsonl" }

    static func message(_ body: () throws -> Any) -> String? {
        do { _ = try body(); return nil } catch let e as PRGEError { return e.message } catch { return "\(error)" }
    }

    static func tempFile(_ text: String) -> String {
        let path = "/tmp/prge-task-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).jsonl"
        let f = fopen(path, "w")!
        fputs(text, f)
        fclose(f)
        return path
    }

    @Test(arguments: Task.builtinNames)
    func devFileLoads(task name: String) throws {
        let task = try Task.named(name)
        let rows = try Dataset.readJSONL(path: Self.dataPath(name))
        let examples = try Dataset.load(path: Self.dataPath(name), task: task)
        if name == "multirc" { #expect(examples.count == 2505, "one example per answer option") } else { #expect(examples.count == rows.count) }
        #expect(!examples.isEmpty)
        for e in examples {
            #expect(!e.prompt.isEmpty && e.response == nil)
            #expect(e.label.map { (0..<task.labels.count).contains($0) } == true)
        }
        // Every class occurs (TREC's 2 ABBR questions included).
        #expect(Set(examples.compactMap(\.label)).count == task.labels.count, "\(name) classes seen")
    }

    @Test func trainFilesLoad() throws {
        for name in ["sst2", "mr", "cr", "subj", "trec", "agnews", "sst5", "rte"] {
            let n = try Dataset.load(path: Self.dataPath(name, "train"), task: try Task.named(name)).count
            #expect(n > 2000, "\(name) train: \(n)")
        }
    }

    @Test func templatesRenderTheDocumentedPrompts() throws {
        func first(_ name: String) throws -> Example { try Dataset.load(path: Self.dataPath(name), task: try Task.named(name))[0] }
        #expect(try first("sst2") == Example(prompt: "it 's a charming and often affecting journey . It was", label: 1))
        #expect(try first("subj") == Example(prompt: "paravasu is the elder son of the great sage raibhya ( mohan agashe ) . This is", label: 1))
        #expect(try first("trec") == Example(prompt: "Question: What county is Modesto , California in ?\nAnswer type:", label: 4))
        #expect(try first("sst5").prompt.hasSuffix("works only sporadically . It was"))
        #expect(try first("agnews") == Example(prompt: "Article: Unions representing workers at Turner   Newall say they are 'disappointed' after talks with stricken parent firm Federal Mogul.\nTopic:", label: 2))
        #expect(try first("rte") == Example(prompt: "Yet, we now are discovering that antibiotics are losing their effectiveness against illness. Disease-causing bacteria are mutating faster than we can come up with new antibiotics to fight the new variations.\nDoes this mean that \"Bacteria is winning the war against antibiotics.\" is true? Yes or No?", label: 0))
        let boolq = try first("boolq")
        #expect(boolq.prompt.hasPrefix("Ethanol fuel -- All biomass"))
        #expect(boolq.prompt.hasSuffix(". Does ethanol take more energy make that produces?") && boolq.label == 0)
        #expect(try first("wsc") == Example(prompt: "I tried to paint a picture of an orchard, with lemons in the lemon trees , but they came out looking more like light bulbs.\nIn the previous sentence, does the pronoun \"they\" refer to lemon trees? Yes or No?\n", label: 0))
        #expect(try first("cb") == Example(prompt: "Suppose Valence the void-brain, Valence the virtuous valet. Why couldn't the figger choose his own portion of titanic anatomy to shaft? Did he think he was helping? Can we infer that \"Valence was helping\"? Yes, No, or Maybe?\n", label: 1))
        #expect(try first("wic") == Example(prompt: "Does the word \"class\" have the same meaning in these two sentences? Yes, No?\nAn emerging professional class.\nApologizing for losing your temper, even though you were badly provoked, showed real class.\n", label: 0))
        #expect(try first("copa") == Example(prompt: "The girl found a bug in her cereal.\nWhat was the effect?\nA: She poured milk in the bowl.\nB: She lost her appetite.\nAnswer:", label: 1))
        let multirc = try first("multirc")
        #expect(multirc.prompt.hasPrefix("What causes a change in motion?"))
        #expect(multirc.prompt.hasSuffix("a very small force.\nQuestion: Would the mass of a baseball affect how much force you have to use to pick it up?\nI found this answer \"No\". Is that correct? Yes or No?\n"))
        #expect(multirc.label == 0)
    }

    @Test func labelWordsAreSingleTokens() throws {
        let tok = try Tokenizer(gguf: try TestSupport.modelFile())
        for name in Task.builtinNames {
            let task = try Task.named(name)
            for word in task.labels {
                #expect(tok.encode(word, addSpecial: false).count == 1, "\(name): \(word.debugDescription) → \(tok.encode(word, addSpecial: false))")
            }
            // The label token is the same whether the text is tokenized whole or prompt, then word.
            let e = try Dataset.load(path: Self.dataPath(name), task: task)[0]
            let word = task.labels[e.label!]
            #expect(tok.encode(e.prompt + word, addSpecial: false) == tok.encode(e.prompt, addSpecial: false) + tok.encode(word, addSpecial: false), "\(name)")
        }
    }

    @Test func userDefinedTemplate() throws {
        let json = #"{"name": "mine", "template": "Review: {text|capitalize} {{stars}} Verdict:", "labels": [" bad", " good"], "text_fields": ["text"], "label_field": "y", "label_values": ["neg", "pos"]}"#
        let task = try Task.from(json: JSONNode(try JSONValue.parse(json)))
        let path = Self.tempFile("{\"text\": \"  fine film \", \"y\": \"pos\"}\n\n{\"text\": \"dull\", \"y\": \"neg\"}\r\n")
        defer { unlink(path) }
        #expect(try Dataset.load(path: path, task: task) == [Example(prompt: "Review: Fine film {stars} Verdict:", label: 1),
                                                              Example(prompt: "Review: Dull {stars} Verdict:", label: 0)])
        #expect(try Task.from(json: JSONNode(.string("sst2"))).labels == [" negative", " positive"])
    }

    @Test func badTasksAreRefused() throws {
        func taskError(_ json: String) -> String? { Self.message { try Task.from(json: JSONNode(try JSONValue.parse(json), source: "t.json")) } }
        #expect(taskError(#"{"template": "{x} is", "labels": [" a", " b"], "labelz": 1}"#)?.contains("$.labelz: unknown key") == true)
        #expect(taskError(#"{"template": "{x} is"}"#)?.contains("$.labels: missing") == true)
        #expect(taskError(#"{"template": "{x|upper} is", "labels": [" a", " b"]}"#)?.contains("unknown filter 'upper'") == true)
        #expect(taskError(#"{"template": "{x is", "labels": [" a", " b"]}"#)?.contains("'{' without '}'") == true)
        #expect(taskError(#"{"template": "no field", "labels": [" a", " b"]}"#)?.contains("no {field}") == true)
        #expect(taskError(#"{"template": "{y} is", "labels": [" a", " b"], "text_fields": ["x"]}"#)?.contains("not in text_fields") == true)
        #expect(taskError(#"{"template": "{x}", "labels": [" a"]}"#)?.contains("at least 2") == true)
        #expect(taskError(#"{"template": "{x}", "labels": [" a", " b"], "label_values": [1]}"#)?.contains("1 label_values for 2 labels") == true)
        #expect(taskError(#""sst3""#)?.contains("unknown task 'sst3'") == true)
    }

    @Test func badRowsNameFileLineAndPath() throws {
        let sst2 = try Task.named("sst2")
        let cases: [(String, String)] = [
            ("{\"sentence\": \"ok\", \"label\": 1}\n{\"sentence\": \"bad\", \"label\": 1\n", ":2: JSON syntax error"),
            ("{\"sentence\": \"ok\", \"label\": 2}\n", ":1: $.label: 2 is out of range 0...1"),
            ("{\"sentence\": \"ok\", \"label\": \"1\"}\n", ":1: $.label: expected a class index 0...1 or a boolean, got string"),
            ("{\"text\": \"ok\", \"label\": 1}\n", ":1: $.sentence: missing"),
            ("{\"sentence\": [1], \"label\": 1}\n", ":1: $.sentence: expected a string or number"),
            ("\n\n[1, 2]\n", ":3: expected a JSON object, got array"),
            ("{\"sentence\": \"ok\"}\n", ":1: $.label: missing"),
        ]
        for (text, expected) in cases {
            let path = Self.tempFile(text)
            defer { unlink(path) }
            let m = Self.message { try Dataset.load(path: path, task: sst2) }
            #expect(m?.contains(path + expected) == true, "\(m ?? "no error")")
        }
        let rte = try Task.named("rte")
        let path = Self.tempFile("{\"premise\": \"p\", \"hypothesis\": \"h\", \"label\": \"maybe\"}\n")
        defer { unlink(path) }
        #expect(Self.message { try Dataset.load(path: path, task: rte) }?.contains(#"label "maybe" is not one of ["entailment","not_entailment"]"#) == true)
        #expect(try Dataset.load(path: Self.tempFile("{\"sentence\": \"x\"}"), task: sst2, requireLabels: false) == [Example(prompt: "x It was")])
        #expect(Self.message { try Dataset.load(path: "/nonexistent/x.jsonl", task: sst2) }?.contains("cannot open") == true)
    }

    @Test func promptResponsePairs() throws {
        let path = Self.tempFile("{\"prompt\": \"Hi \", \"response\": \" there\\n\", \"id\": 3}\n{\"prompt\": \"\", \"response\": \"x\"}\n")
        defer { unlink(path) }
        #expect(try Dataset.load(path: path, task: .promptResponse) == [Example(prompt: "Hi ", response: " there\n"), Example(prompt: "", response: "x")])
        #expect(try Task.from(json: JSONNode(try JSONValue.parse(#"{"type": "prompt_response", "name": "notes"}"#))).kind == .promptResponse)
        let bad = Self.tempFile("{\"prompt\": \"Hi\"}\n")
        defer { unlink(bad) }
        #expect(Self.message { try Dataset.load(path: bad, task: .promptResponse) }?.contains(":1: $.response: missing") == true)
    }
}
