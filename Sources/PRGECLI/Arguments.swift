// A tiny command-line parser: each command declares its options and positional arguments, and
// gets back the parsed values or a UsageError that says what is wrong. Conventions:
//   --name VALUE or --name=VALUE; flags take no value; options may come in any order, each once;
//   `--` ends the options (for a TEXT that starts with '-'); -h / --help asks for the command's help.

/// Wrong use of the command line: exit status 2, with the command's usage.
struct UsageError: Error, Sendable {
    let message: String
    init(_ message: String) { self.message = message }
}

/// One option of a command.
struct Option: Sendable {
    let names: [String]        // the first is canonical: how values are looked up and shown
    let value: String?         // the value's name in help ("FILE"); nil for a flag
    let help: String
    var required = false

    init(_ names: String..., value: String? = nil, required: Bool = false, help: String) {
        self.names = names
        self.value = value
        self.required = required
        self.help = help
    }

    var name: String { names[0] }
    var synopsis: String {
        let s = value.map { "\(name) \($0)" } ?? name
        return required ? s : "[\(s)]"
    }
}

/// A subcommand: what it takes, its help text and what it runs.
struct Command: Sendable {
    let name: String
    let summary: String                  // one line, for `prge help`
    let options: [Option]
    let positionals: [String]            // names of the required positional arguments, in order
    let details: String                  // extra paragraphs for `prge <name> --help`; may be empty
    let run: @Sendable (Arguments) throws -> Int32   // exit status

    var usage: String {
        (["prge", name] + options.map(\.synopsis) + positionals).joined(separator: " ")
    }

    var help: String {
        var s = "usage: \(usage)\n\n\(summary)\n"
        if !details.isEmpty { s += "\n\(details)\n" }
        s += "\noptions:\n"
        let width = options.map { $0.names.joined(separator: ", ").count + ($0.value.map { $0.count + 1 } ?? 0) }.max() ?? 0
        for o in options {
            let left = o.names.joined(separator: ", ") + (o.value.map { " \($0)" } ?? "")
            s += "  " + left + String(repeating: " ", count: width - left.count + 2) + o.help + "\n"
        }
        s += "  -h, --help" + String(repeating: " ", count: max(width - 8, 0)) + "this help\n"
        return s
    }

    /// Parses `argv` (the words after the command name); nil when help was asked for.
    func parse(_ argv: [String]) throws -> Arguments? {
        var values: [String: String] = [:]
        var flags: Set<String> = []
        var rest: [String] = []
        var i = 0, optionsEnded = false
        while i < argv.count {
            let word = argv[i]
            i += 1
            if optionsEnded || !word.hasPrefix("-") || word == "-" { rest.append(word); continue }
            if word == "--" { optionsEnded = true; continue }
            if word == "-h" || word == "--help" { return nil }
            let (key, inline) = word.firstIndex(of: "=").map { (String(word[..<$0]), String(word[word.index(after: $0)...])) } ?? (word, nil)
            guard let o = options.first(where: { $0.names.contains(key) }) else {
                throw UsageError("unknown option '\(key)' (put '--' before a text that starts with '-')")
            }
            guard values[o.name] == nil, !flags.contains(o.name) else { throw UsageError("\(o.name) given twice") }
            if o.value == nil {
                if inline != nil { throw UsageError("\(o.name) takes no value") }
                flags.insert(o.name)
            } else if let v = inline {
                values[o.name] = v
            } else {
                guard i < argv.count else { throw UsageError("\(o.name) needs a value (\(o.value!))") }
                values[o.name] = argv[i]
                i += 1
            }
        }
        for o in options where o.required && values[o.name] == nil { throw UsageError("missing \(o.name) \(o.value ?? "")") }
        guard rest.count == positionals.count else {
            if rest.count < positionals.count { throw UsageError("missing \(positionals[rest.count])") }
            throw UsageError("unexpected argument '\(rest[positionals.count])' (quote a text that has spaces)")
        }
        return Arguments(values: values, flags: flags, positionals: rest)
    }
}

/// Parsed values with typed, checked access; a bad value is a UsageError naming the option.
struct Arguments: Sendable {
    let values: [String: String]
    let flags: Set<String>
    let positionals: [String]

    func flag(_ name: String) -> Bool { flags.contains(name) }
    func string(_ name: String) -> String? { values[name] }

    /// A required option (the parser has checked it is there).
    func required(_ name: String) -> String { values[name]! }

    func int(_ name: String, default d: Int, in range: ClosedRange<Int>) throws -> Int {
        guard let s = values[name] else { return d }
        guard let v = Int(s), range.contains(v) else {
            throw UsageError("\(name) must be an integer in \(range.lowerBound)...\(range.upperBound), got '\(s)'")
        }
        return v
    }

    func uint64(_ name: String, default d: UInt64) throws -> UInt64 {
        guard let s = values[name] else { return d }
        guard let v = UInt64(s) else { throw UsageError("\(name) must be a non-negative integer, got '\(s)'") }
        return v
    }

    func float(_ name: String, default d: Float, in range: ClosedRange<Float>) throws -> Float {
        guard let s = values[name] else { return d }
        guard let v = Float(s), v.isFinite, range.contains(v) else {
            throw UsageError("\(name) must be a number in \(range.lowerBound)...\(range.upperBound), got '\(s)'")
        }
        return v
    }

    /// One of `choices`, by its raw value.
    func choice<T: RawRepresentable & CaseIterable>(_ name: String, default d: T) throws -> T where T.RawValue == String {
        guard let s = values[name] else { return d }
        guard let v = T(rawValue: s) else {
            throw UsageError("\(name) must be one of \(T.allCases.map(\.rawValue).joined(separator: ", ")), got '\(s)'")
        }
        return v
    }
}
