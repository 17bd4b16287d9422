import ArgumentParser
import WHPApp
import WHPDomain

extension Report {
    struct OverdueCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "overdue",
            abstract: "Referrals whose next step is past due: the gatekeeper, the provider referral, the start.",
            discussion: """
                On DATE (default today) lists every referral waiting for an event the log does not hold after \
                its due date (RULES2 R14): a referral awaiting the gatekeeper (due referral_date + pending_days), \
                a WHP/PSC allocation not yet referred to the provider (due the decision's recorded date + \
                provider_referral_working_days), a provider referral with no start or did-not-start (due its \
                date + start_working_days). Working days are Monday to Friday except district-config/calendar.toml's \
                bank holidays. For operators: it names referrals, WHP and PSC among them.
                """)

        @OptionGroup var common: CommonOptions

        @Option(help: ArgumentHelp("The day to report on (YYYY-MM-DD; default: today, or WHP_NOW's day).", valueName: "DATE"))
        var date: String?

        @Flag(help: "Print [{referral_id, district, due, due_date, working_days_overdue}].")
        var json = false

        func run() throws {
            let day: CivilDate
            if let date {
                guard let d = CivilDate(date) else { throw ValidationError("--date must be a date YYYY-MM-DD") }
                day = d
            } else {
                day = try serviceClock().now().date
            }
            let items = try OverdueReport.items(paths: common.paths, on: day)
            stdout(json ? OverdueReport.json(items) : OverdueReport.text(items, on: day))
        }
    }
}
