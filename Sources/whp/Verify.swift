import ArgumentParser
import WHPApp

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-verify the whole trial: chain, draws, gatekeeper runs, locks, PSC rule, config.",
        discussion: """
            Reads the store (or, with --bundle, an audit bundle) and re-derives everything an \
            auditor can: the hash chain, every arm from its alloc_seed and block, every gatekeeper \
            run against its rule, every referral against the locks, PSC only in PSC districts, \
            recorded_at order, the config hash and the published commitment file, and (store only) \
            every derived table rebuilt from the log. With --seed also the commitment, every \
            derived seed and block size, and every lottery key. Exit 0 only if every check holds; \
            each failed check names the first event that breaks it.
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: ArgumentHelp("Folder of the published commitment files.", valueName: "DIR"))
    var seeds: String = "seeds"

    @Option(help: ArgumentHelp("Verify this audit bundle (from `whp audit-bundle`) instead of the store.", valueName: "DIR"))
    var bundle: String?

    @Option(help: ArgumentHelp("The revealed master seed file (mode 0600).", valueName: "FILE"))
    var seed: String?

    @Option(help: ArgumentHelp("A checkpoint from `whp checkpoint`: the log must still hold that head at that seq.", valueName: "FILE"))
    var checkpoint: String?

    @Flag(help: "Print the report as JSON: {ok, events, head, checks: [{name, ok, detail, first_bad_seq?}]}.")
    var json = false

    func run() throws {
        let report = try Auditor.verify(paths: common.paths, seedsDir: seeds, bundle: bundle, seedFile: seed, checkpointFile: checkpoint)
        stdout(json ? Auditor.json(report) : Auditor.text(report))
        if !report.ok { throw ExitCode(1) }
    }
}
