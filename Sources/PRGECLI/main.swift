import PRGE
#if canImport(Glibc)
import Glibc
#endif

// The `prge` command line: `prge <command> [options] ARGS`. Exit status 0 ok, 1 error (a message
// on stderr: "prge: error: ..."), 2 wrong usage.

/// Every command, in the order `prge help` lists them. train, eval, bench, replay and export are
/// added here by their owners, each in its own file, as a `Command` value.
let commands: [Command] = [
    tokenizeCommand,
    logitsCommand,
    perplexityCommand,
    generateCommand,
    benchCommand,
    trainCommand,
    evalCommand,
    replayCommand,
]

@MainActor func overview() -> String {
    let width = commands.map(\.name.count).max() ?? 0
    var s = "usage: prge <command> [options] ARGS\n\ncommands:\n"
    for c in commands { s += "  " + c.name + String(repeating: " ", count: width - c.name.count + 2) + c.summary + "\n" }
    return s + "\n`prge help <command>` or `prge <command> --help` describes one command.\n"
}

@MainActor func run(_ argv: [String]) -> Int32 {
    guard let name = argv.first else {
        Common.err(overview())
        return 2
    }
    if ["help", "--help", "-h"].contains(name) {
        guard argv.count > 1 else { Common.out(overview()); return 0 }
        guard let c = commands.first(where: { $0.name == argv[1] }) else {
            Common.printError("unknown command '\(argv[1])' (commands: \(commands.map(\.name).joined(separator: ", ")))")
            return 2
        }
        Common.out(c.help)
        return 0
    }
    guard let command = commands.first(where: { $0.name == name }) else {
        Common.printError("unknown command '\(name)' (commands: \(commands.map(\.name).joined(separator: ", ")); see `prge help`)")
        return 2
    }
    do {
        guard let args = try command.parse(Array(argv.dropFirst())) else {
            Common.out(command.help)
            return 0
        }
        return try command.run(args)
    } catch let e as UsageError {
        Common.printError(e.message)
        Common.err("usage: \(command.usage)\n(see `prge \(command.name) --help`)\n")
        return 2
    } catch {
        Common.printError("\(error)")
        return 1
    }
}

exit(run(Array(CommandLine.arguments.dropFirst())))
