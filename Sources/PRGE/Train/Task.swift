// Tasks: how a data row becomes a prompt, and which label word answers it.
//
// Classification is by label words (MeZO / P-RGE): the prompt is rendered from a template and
// the model's next token is scored over the label words, one per class; each label word must be
// a single token of the model's tokenizer (the trainer checks that when it loads a task).
// Causal-LM tasks (`promptResponse`) train on the response tokens of prompt/response pairs.
//
// Templates: literal text with {field} placeholders. A field is a JSON member of the row,
// dotted for nested objects ({target.span1_text}); its value (a string or a number) is inserted
// with surrounding whitespace trimmed, then passed through optional filters:
//   {f|lower}       lower-case
//   {f|capitalize}  first character upper-case
//   {f|question}    append "?" unless it already ends with one
// "{{" and "}}" are literal braces.
//
// The built-in prompts (folder names of ../shared/data) and their sources:
//   sst2, mr, cr        "<sentence> It was" (MeZO / LM-BFF) + negative/positive (ours: MeZO's
//                       terrible/great levels off ~3 points lower, docs/RECIPE.md 2026-12-03 b)
//   sst5                "<sentence> It was" + terrible/bad/okay/good/great — MeZO / LM-BFF
//   subj                "<sentence> This is" + subjective/objective — LM-BFF
//   trec                LM-BFF's words (Description, Entity, Expression, Human, Location, Number);
//                       LM-BFF puts the word before the question, so the causal prompt is ours
//   agnews              World/Sports/Business/Technology after "Topic:" — ours
//   rte, boolq          P-RGE's prompts, label word after a space
//   cb, wic, wsc, multirc  MeZO's (PromptSource) prompts, which end in a newline; the label
//                       word follows it without a space, as in MeZO
//   copa                MeZO scores the two completions by likelihood; with single-token labels
//                       we ask for A or B instead — ours
// Label words with a leading space are what byte-level BPE (SmolLM2, Llama 3) keeps as one
// token after a word ("Ġgreat"); after a newline there is no space.

public struct Example: Sendable, Equatable {
    public var prompt: String
    public var label: Int?          // class index, for classification
    public var response: String?    // target text, for causal-LM tasks

    public init(prompt: String, label: Int? = nil, response: String? = nil) {
        self.prompt = prompt
        self.label = label
        self.response = response
    }
}

public struct Task: Sendable {
    public enum Kind: Sendable, Equatable { case classification, promptResponse }

    public let name: String
    public let kind: Kind
    public let template: String
    /// Label words, in class order.
    public let labels: [String]
    public let labelField: String
    /// The label field's value for each class; nil: the class index itself (numbers), or
    /// false/true for two classes (booleans).
    public let labelValues: [JSONValue]?
    private let parts: [TemplatePart]
    /// Turns one data row into several (MultiRC: a paragraph → one row per answer option).
    private let expand: (@Sendable (JSONNode) throws -> [JSONNode])?

    /// A classification task. Throws when the template does not parse, uses a field outside
    /// `textFields` (when given), or the labels are unusable.
    public init(name: String, template: String, labels: [String], textFields: [String]? = nil,
                labelField: String = "label", labelValues: [JSONValue]? = nil) throws {
        try self.init(name, template, labels, textFields, labelField, labelValues, expand: nil)
    }

    private init(_ name: String, _ template: String, _ labels: [String], _ textFields: [String]?,
                 _ labelField: String, _ labelValues: [JSONValue]?,
                 expand: (@Sendable (JSONNode) throws -> [JSONNode])?) throws {
        func bad(_ m: String) -> PRGEError { PRGEError.invalid("task '\(name)': \(m)") }
        parts = try TemplatePart.parse(template, task: name)
        guard labels.count >= 2 else { throw bad("needs at least 2 label words, got \(labels.count)") }
        guard Set(labels).count == labels.count else { throw bad("label words \(labels) repeat") }
        guard labels.allSatisfy({ !$0.trimmingSpaces.isEmpty }) else { throw bad("a label word is empty") }
        if let values = labelValues, values.count != labels.count {
            throw bad("\(values.count) label_values for \(labels.count) labels")
        }
        if let fields = textFields {
            for case .field(let path, _) in parts where !fields.contains(path.joined(separator: ".")) {
                throw bad("template uses {\(path.joined(separator: "."))}, which is not in text_fields \(fields)")
            }
        }
        self.name = name
        self.kind = .classification
        self.template = template
        self.labels = labels
        self.labelField = labelField
        self.labelValues = labelValues
        self.expand = expand
    }

    private init(promptResponse name: String) {
        self.name = name
        kind = .promptResponse
        template = ""
        labels = []
        labelField = ""
        labelValues = nil
        parts = []
        expand = nil
    }

    /// Prompt/response pairs: each row is {"prompt": string, "response": string} (other members
    /// are ignored); the loss is on the response tokens.
    public static let promptResponse = Task(promptResponse: "prompt_response")

    // ---- rows → examples ------------------------------------------------------------------

    /// The examples one data row gives (several for MultiRC). With `requireLabel` false, a row
    /// without a label gives examples with label nil (data to predict, not to train on).
    public func examples(from row: JSONNode, requireLabel: Bool = true) throws -> [Example] {
        switch kind {
        case .promptResponse:
            let prompt = try row.require("prompt").string(), response = try row.require("response").string()
            guard !response.isEmpty else { throw try row.require("response").error("empty response") }
            return [Example(prompt: prompt, response: response)]
        case .classification:
            return try (expand?(row) ?? [row]).map { r in
                let labelled = try requireLabel || r.field(labelField) != nil
                return Example(prompt: try render(r), label: labelled ? try labelIndex(r) : nil)
            }
        }
    }

    /// The template filled in from `row`.
    public func render(_ row: JSONNode) throws -> String {
        var out = ""
        for part in parts {
            switch part {
            case .text(let s): out += s
            case .field(let path, let filters):
                var node = row
                for key in path { node = try node.require(key) }
                var v: String
                switch node.value {
                case .string(let s): v = s
                case .number(let d): v = JSONValue.format(d)
                default: throw node.error("expected a string or number for the template, got \(node.value.typeName)")
                }
                v = v.trimmingSpaces
                for f in filters { v = f.apply(v) }
                out += v
            }
        }
        return out
    }

    /// The class index of `row`'s label.
    public func labelIndex(_ row: JSONNode) throws -> Int {
        let node = try row.require(labelField)
        if let values = labelValues {
            guard let i = values.firstIndex(of: node.value) else {
                throw node.error("label \(node.value.serialized) is not one of \(JSONValue.array(values).serialized)")
            }
            return i
        }
        switch node.value {
        case .number:
            return try node.int(in: 0...(labels.count - 1))
        case .bool(let b) where labels.count == 2:
            return b ? 1 : 0
        default:
            throw node.error("expected a class index 0...\(labels.count - 1)\(labels.count == 2 ? " or a boolean" : ""), got \(node.value.typeName)")
        }
    }

    // ---- built-in and user-defined tasks ----------------------------------------------------

    public static let builtinNames = ["sst2", "mr", "cr", "sst5", "subj", "trec", "agnews",
                                      "rte", "cb", "boolq", "wic", "wsc", "multirc", "copa"]

    /// A built-in task by its data folder name, or `prompt_response`.
    public static func named(_ name: String) throws -> Task {
        let yesNo: [JSONValue] = [.string("entailment"), .string("not_entailment")]
        let sentiment = [" negative", " positive"]   // learned to 84.6 % vs ~81 % for terrible/great (docs/RECIPE.md)
        switch name {
        case "sst2", "mr", "cr":
            return try Task(name: name, template: "{sentence} It was", labels: sentiment)
        case "sst5":
            return try Task(name: name, template: "{sentence} It was", labels: [" terrible", " bad", " okay", " good", " great"])
        case "subj":
            return try Task(name: name, template: "{sentence} This is", labels: [" subjective", " objective"])
        case "trec":
            return try Task(name: name, template: "Question: {sentence}\nAnswer type:",
                            labels: [" Description", " Entity", " Expression", " Human", " Location", " Number"])
        case "agnews":
            return try Task(name: name, template: "Article: {description}\nTopic:",
                            labels: [" World", " Sports", " Business", " Technology"])
        case "rte":
            return try Task(name: name, template: "{premise}\nDoes this mean that \"{hypothesis}\" is true? Yes or No?",
                            labels: [" Yes", " No"], labelValues: yesNo)
        case "cb":
            return try Task(name: name, template: "Suppose {premise} Can we infer that \"{hypothesis}\"? Yes, No, or Maybe?\n",
                            labels: ["Yes", "No", "Maybe"],
                            labelValues: [.string("entailment"), .string("contradiction"), .string("neutral")])
        case "boolq":
            return try Task(name: name, template: "{passage} {question|capitalize|question}", labels: [" No", " Yes"])
        case "wic":
            return try Task(name: name, template: "Does the word \"{word}\" have the same meaning in these two sentences? Yes, No?\n{sentence1}\n{sentence2}\n",
                            labels: ["No", "Yes"])
        case "wsc":
            return try Task(name: name, template: "{text}\nIn the previous sentence, does the pronoun \"{target.span2_text|lower}\" refer to {target.span1_text}? Yes or No?\n",
                            labels: ["No", "Yes"])
        case "multirc":
            return try Task(name, "{paragraph}\nQuestion: {question}\nI found this answer \"{answer}\". Is that correct? Yes or No?\n",
                            ["No", "Yes"], nil, "label", nil, expand: multircRows)
        case "copa":
            return try Task(name: name, template: "{premise}\nWhat was the {question}?\nA: {choice1}\nB: {choice2}\nAnswer:",
                            labels: [" A", " B"])
        case promptResponse.name:
            return promptResponse
        default:
            throw PRGEError.invalid("unknown task '\(name)' (built in: \(builtinNames.joined(separator: ", ")), \(promptResponse.name))")
        }
    }

    /// A task from JSON: a built-in name ("sst2") or an object
    /// {"name", "template", "labels", "text_fields", "label_field", "label_values"}
    /// (template and labels required), or {"name", "type": "prompt_response"}.
    public static func from(json node: JSONNode) throws -> Task {
        if case .string(let name) = node.value { return try named(name) }
        if try node.field("type") != nil {
            try node.checkKeys(["name", "type"])
            let type = try node.require("type")
            guard try type.string() == promptResponse.name else { throw type.error("unknown task type (known: \(promptResponse.name))") }
            return Task(promptResponse: try node.field("name")?.string() ?? promptResponse.name)
        }
        try node.checkKeys(["name", "template", "labels", "text_fields", "label_field", "label_values"])
        let name = try node.field("name")?.string() ?? "custom"
        let labels = try node.require("labels").array().map { try $0.string() }
        let fields = try node.field("text_fields")?.array().map { try $0.string() }
        let values = try node.field("label_values")?.array().map(\.value)
        do {
            return try Task(name: name, template: try node.require("template").string(), labels: labels, textFields: fields,
                            labelField: try node.field("label_field")?.string() ?? "label", labelValues: values)
        } catch let e as PRGEError {
            throw node.error(e.message)
        }
    }
}

/// MultiRC rows are paragraphs; the task is one example per (question, answer option).
@Sendable private func multircRows(_ row: JSONNode) throws -> [JSONNode] {
    let passage = try row.require("passage")
    let text = try passage.require("text")
    var out: [JSONNode] = []
    for q in try passage.require("questions").array() {
        let question = try q.require("question")
        for a in try q.require("answers").array() {
            let flat = JSONValue.object([("paragraph", text.value), ("question", question.value),
                                         ("answer", try a.require("text").value), ("label", try a.require("label").value)])
            out.append(JSONNode(flat, source: a.source, path: a.path))
        }
    }
    return out
}

// ---- templates -------------------------------------------------------------------------------

enum TemplateFilter: String, Sendable {
    case lower, capitalize, question

    func apply(_ s: String) -> String {
        switch self {
        case .lower: return s.lowercased()
        case .capitalize: return s.prefix(1).uppercased() + s.dropFirst()
        case .question: return s.hasSuffix("?") ? s : s + "?"
        }
    }
}

enum TemplatePart: Sendable {
    case text(String)
    case field([String], [TemplateFilter])   // dotted path, filters

    static func parse(_ template: String, task: String) throws -> [TemplatePart] {
        func bad(_ m: String) -> PRGEError { PRGEError.invalid("task '\(task)': template \(JSONValue.string(template).serialized): \(m)") }
        var parts: [TemplatePart] = []
        var text = ""
        var i = template.startIndex
        while i < template.endIndex {
            let c = template[i]
            let next = template.index(after: i)
            if c == "}" {
                guard next < template.endIndex, template[next] == "}" else { throw bad("'}' without '{' (write '}}' for a brace)") }
                text.append("}")
                i = template.index(after: next)
            } else if c == "{" {
                if next < template.endIndex, template[next] == "{" { text.append("{"); i = template.index(after: next); continue }
                guard let close = template[next...].firstIndex(of: "}") else { throw bad("'{' without '}'") }
                let spec = template[next..<close].split(separator: "|", omittingEmptySubsequences: false).map(String.init)
                let path = spec[0].split(separator: ".", omittingEmptySubsequences: false).map(String.init)
                guard path.allSatisfy({ !$0.isEmpty && !$0.contains("{") && !$0.contains(" ") }) else {
                    throw bad("bad field name '\(spec[0])'")
                }
                let filters = try spec.dropFirst().map { f in
                    guard let filter = TemplateFilter(rawValue: f) else { throw bad("unknown filter '\(f)' (known: lower, capitalize, question)") }
                    return filter
                }
                if !text.isEmpty { parts.append(.text(text)); text = "" }
                parts.append(.field(path, filters))
                i = template.index(after: close)
            } else {
                text.append(c)
                i = next
            }
        }
        if !text.isEmpty { parts.append(.text(text)) }
        guard parts.contains(where: { if case .field = $0 { return true }; return false }) else { throw bad("no {field}") }
        return parts
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces, tabs and newlines.
    var trimmingSpaces: String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[first...last])
    }
}
