import WHPDomain

extension Evaluation {
    /// `codebook.md`: every column and its values, how the rows were chosen and
    /// ordered, what the dates mean at this precision, and loading recipes for
    /// pandas, R and Stata written for this export's format and precision.
    /// The recipes sit in fenced blocks after a `<!-- recipe: NAME -->` line,
    /// so CI can run exactly what the codebook prints.
    public static func codebook(config: TrialConfig, precision: DatePrecision, format: ExportFormat) -> String {
        let dateForm: String =
            switch precision {
            case .day: "the day, `YYYY-MM-DD` (e.g. `2017-11-03`)"
            case .week: "the ISO 8601 week, `YYYY-Www` with the ISO week-year (e.g. `2017-W44`; the week of 2021-01-03 is `2020-W53`)"
            case .month: "the month, `YYYY-MM` (e.g. `2017-11`)"
            }
        let file =
            format == .csv
            ? "`allocations.csv` (RFC 4180, UTF-8, header row, CRLF line ends; an empty cell is a missing value)"
            : "`allocations.jsonl` (UTF-8, one JSON object per line; `null` is a missing value)"
        func codes(_ a: [String]) -> String { a.isEmpty ? "(none in this trial)" : a.map { "`\($0)`" }.joined(separator: ", ") }
        let providers = ExportVocabulary.providers(config)
        let backdate = config.recruitment.maxBackdateDays
        var s = """
            # Codebook — trial \(config.trialID)

            Data file: \(file). Beside it: `datapackage.json`, a Frictionless Data Package
            whose Table Schema types every column and lists every code below (check a copy
            with `frictionless validate datapackage.json`), and `manifest.json`, which gives the
            data cut (`head_seq`, `head`), the row counts and the sha256 of every file.

            **Rows.** One row per referral that was not cancelled. Every referral of a person who
            opted out of the evaluation is left out (`removed_opted_out` in `manifest.json` counts
            them). Rows are sorted by `research_id` (as bytes), then `referral_number` — not in
            the order the referrals were made — so that the file cannot be lined up with the
            trial's audit log. Nothing in the file identifies a person: no National Insurance
            or reference number, pseudonym, referral id, staff id, name or free text.

            **Disclosure risk.** `manifest.json` has `k_anonymity`: over the quasi-identifiers
            `\(KAnonymity.quasiIdentifiers.joined(separator: "`, `"))` at this export's precision,
            `k_min` is the size of the smallest group of rows that share all of them and
            `rows_in_classes_below_10` counts the rows in groups of fewer than 10. A coarser
            `--date-precision` raises `k_min`; `whp export --min-k K` refuses to write an export
            whose `k_min` is below K.

            **Date precision: \(precision.rawValue).** Every date is given as \(dateForm).\(precision == .day ? "" : " A value names the whole period, not its first day.")

            | column | meaning | values |
            | --- | --- | --- |
            | `research_id` | the person, as a stable research id: HMAC under the trial's evaluation key of the person's pseudonym (ALLOCATION.md §5); the same in every export of this trial, except as noted below | 64 hex digits |
            | `district` | the district that made the referral | \(codes(config.districts.map(\.id))) |
            | `group` | the referral's group | \(codes(config.groups)) |
            | `stratum` | the allocation stratum: the district\(config.stratifyByGroup ? ", `|`, and the group" : " (this trial does not stratify by group)") | \(codes(ExportVocabulary.strata(config))) |
            | `referral_number` | the person's rows numbered 1, 2, … in referral order (cancelled referrals, and rows left out, are not counted) | integer ≥ 1 |
            | `referral_date` | when the work coach referred | date |
            | `gk_date` | when the district gatekeeper decided (the date the run names); missing while pending | date or missing |
            | `gk_outcome` | the gatekeeper's decision | \(codes(ExportVocabulary.gkOutcomes)) |
            | `gk_rule` | how the gatekeeper decided: `fifo` (oldest first) or `lottery` (random order) under a capacity, or `manual` (named by the gatekeeper — not random); missing while pending | \(codes(ExportVocabulary.gkRules)), missing |
            | `arm` | the random allocation of a selected referral | \(codes(ExportVocabulary.arms(config))), missing |
            | `in_error` | the reason the allocation was flagged as made in error (it keeps its arm, stratum and lock) | \(codes(ExportVocabulary.flagReasons)), missing |
            | `provider_referral_date` | WHP/PSC only: when the work coach referred the participant to the provider | date or missing |
            | `start_date` | WHP/PSC only: when the participant started (the `started` step; a `did_not_start` has no date here) | date or missing |
            | `not_started_reason` | WHP/PSC only: why the participant did not start | \(codes(ExportVocabulary.notStartedReasons)), missing |
            | `left_date` | WHP/PSC only: when a participant who started left | date or missing |
            | `left_reason` | why the participant left | \(codes(ExportVocabulary.leftReasons)), missing |
            | `disclosed` | whether the referral's true status (for RCG: that it is in the control group) was disclosed to front-line staff | `true`, `false` |
            | `corrected_group` | the group a `wrong_group` flag says the referral should have had (`group` keeps the group it was allocated in) | \(codes(config.groups)), missing |
            | `provider` | the provider a WHP or PSC allocation drew (RULES2 R15) | \(codes(providers)), missing |

            Arms: WHP = the Work and Health Programme; PSC = the Public Sector Comparator (only in
            the four PSC districts); RCG = the Random Control Group, who get no programme and so
            no follow-up steps.

            **One person, two identifiers.** A claimant can be referred by National Insurance
            number or by DCAMS reference number; once a reference number is linked to a NINO, the
            two are one person, and every row of that person carries the research id of the
            NINO. So the research id of a reference number that was not yet linked **changes
            once**, when it is linked: rows that an earlier export showed under it appear, in a
            later export, under the NINO's research id, and `referral_number` counts the person's
            rows under both identifiers. A link never undoes an allocation: a person randomised
            under both identifiers keeps both rows.

            **Dates and locks.** \(lockNote(backdate))

            **Follow-up.** The steps are recorded for WHP and PSC allocations only, each at most
            once and in order: `provider_referral`, then `started` or `did_not_start` (with a
            reason), then, after `started`, `left` (with a reason). Flagged referrals keep their
            follow-up. A missing step has not been recorded by the data cut.

            ## Loading the data

            Each recipe below reads this export with the right type for every column: codes as
            categories (factors) with the levels above, so an unknown code is an error rather
            than silently missing; `referral_number` as an integer; `disclosed` as a logical;
            missing values as missing (not as empty strings); and each date column \(datePhrase(precision)).
            Run a recipe in the export's folder.

            ### pandas

            <!-- recipe: pandas -->
            ```python
            \(pandasRecipe(config: config, precision: precision, format: format))
            ```

            Example: take-up by arm — of the selected referrals in each arm, how many started
            with a provider (RCG has no programme, so none start).

            <!-- recipe: pandas-take-up -->
            ```python
            selected = df[df["gk_outcome"] == "selected"]
            take_up = (
                selected.assign(started=selected["start_date"].notna())
                .groupby("arm", observed=True)["started"]
                .agg(allocated="size", started="sum", take_up="mean")
            )
            print(take_up)
            ```

            ### R

            <!-- recipe: r -->
            ```r
            \(rRecipe(config: config, precision: precision, format: format))
            ```

            ### Stata

            \(stataRecipe(config: config, precision: precision, format: format))

            """
        s = s.replacingOccurrences(of: "\n\n\n", with: "\n\n")
        return s
    }

    static func lockNote(_ backdate: Int) -> String {
        """
        `gk_date` is the date the gatekeeper's run names. Under rules 2 (trials started
        by this release) the re-referral locks run from the date the decision was **recorded**,
        not from `gk_date`; a run may be dated up to `max_backdate_days` (\(backdate) in this
        trial's config) before the day it is recorded, so a lock can end up to \(backdate) days later
        than `gk_date` alone suggests. Under rules 1 the locks run from `gk_date`.
        """
    }

    static func datePhrase(_ p: DatePrecision) -> String {
        switch p {
        case .day: return "as a date"
        case .month:
            return
                "as a month: pandas gets a monthly `Period` (not the 1st of the month), R and Stata a date of the month's first day (R) or a Stata monthly date (`%tm`)"
        case .week:
            return
                "as an ISO week: pandas gets a weekly `Period` (Monday to Sunday), R and Stata the date of the week's Monday (ISO weeks are not Stata's `%tw` weeks)"
        }
    }

    static let dateColumns = ["referral_date", "gk_date", "provider_referral_date", "start_date", "left_date"]

    /// The coded columns and their levels, in column order.
    static func levels(_ config: TrialConfig) -> [(String, [String])] {
        [
            ("district", config.districts.map(\.id)), ("group", config.groups), ("stratum", ExportVocabulary.strata(config)),
            ("gk_outcome", ExportVocabulary.gkOutcomes), ("gk_rule", ExportVocabulary.gkRules), ("arm", ExportVocabulary.arms(config)),
            ("in_error", ExportVocabulary.flagReasons), ("not_started_reason", ExportVocabulary.notStartedReasons),
            ("left_reason", ExportVocabulary.leftReasons), ("corrected_group", config.groups),
            ("provider", ExportVocabulary.providers(config)),
        ]
    }

    /// A string literal for Python, R and Stata alike (the codes are plain ASCII in practice; quotes and backslashes escaped).
    static func quoted(_ s: String) -> String {
        "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    static func pandasRecipe(config: TrialConfig, precision: DatePrecision, format: ExportFormat) -> String {
        let levels = levels(config).map { "    \(quoted($0.0)): [\($0.1.map(quoted).joined(separator: ", "))]," }.joined(separator: "\n")
        let read =
            format == .csv
            ? """
            # Every cell as text first, so nothing is guessed: an empty cell is missing.
            df = pd.read_csv("allocations.csv", dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
            """
            : """
            # No guessing of types or dates: null is missing.
            df = pd.read_json("allocations.jsonl", lines=True, dtype=False, convert_dates=False, encoding="utf-8")
            """
        let convert: String =
            switch precision {
            case .day: #"pd.to_datetime(text, format="%Y-%m-%d")"#
            case .month: #"pd.to_datetime(text, format="%Y-%m").dt.to_period("M")"#
            case .week: #"pd.to_datetime(text + "-1", format="%G-W%V-%u").dt.to_period("W-SUN")"#
            }
        return """
            import pandas as pd

            LEVELS = {
            \(levels)
            }
            DATES = [\(dateColumns.map(quoted).joined(separator: ", "))]

            \(read)
            df["research_id"] = df["research_id"].astype("string")
            df["referral_number"] = df["referral_number"].astype("Int64")
            df["disclosed"] = df["disclosed"].map({"true": True, "false": False, True: True, False: False}).astype("boolean")
            for column, levels in LEVELS.items():
                text = df[column].astype("string")
                unknown = set(text.dropna()) - set(levels)
                if unknown:
                    raise ValueError(f"{column}: codes not in the codebook: {sorted(unknown)}")
                df[column] = pd.Categorical(text, categories=levels)
            for column in DATES:
                text = df[column].astype("string")
                df[column] = \(convert)
            """
    }

    static func rRecipe(config: TrialConfig, precision: DatePrecision, format: ExportFormat) -> String {
        let levels = levels(config).map { "  \($0.0) = c(\($0.1.map(quoted).joined(separator: ", ")))" }.joined(separator: ",\n")
        let read =
            format == .csv
            ? """
            # Every cell as text first; an empty cell is missing (NA), not "".
            df <- read.csv("allocations.csv", colClasses = "character", na.strings = "", encoding = "UTF-8", check.names = FALSE)
            """
            : """
            # JSON Lines through jsonlite (Debian: r-cran-jsonlite); null is NA.
            df <- jsonlite::stream_in(file("allocations.jsonl", encoding = "UTF-8"), verbose = FALSE)
            columns <- c(\(EvaluationRow.columns.map(quoted).joined(separator: ", ")))
            for (column in setdiff(columns, names(df))) df[[column]] <- rep(NA_character_, nrow(df))
            df <- df[columns]
            for (column in setdiff(columns, c("referral_number", "disclosed"))) df[[column]] <- as.character(df[[column]])
            """
        let convert: String =
            switch precision {
            case .day: #"as.Date(text, format = "%Y-%m-%d")"#
            case .month: #"as.Date(paste0(text, "-01"), format = "%Y-%m-%d")  # the month's first day"#
            case .week: "iso_week_monday(text)"
            }
        let weekHelper =
            precision == .week
            ? """

            # The Monday of an ISO week "YYYY-Www": the week holding 4 January is week 1.
            iso_week_monday <- function(text) {
              year <- as.integer(substr(text, 1, 4))
              week <- as.integer(substr(text, 7, 8))
              jan4 <- as.Date(sprintf("%04d-01-04", year), format = "%Y-%m-%d")
              jan4 - (as.integer(format(jan4, "%u")) - 1) + 7 * (week - 1)
            }
            """ : ""
        return """
            levels <- list(
            \(levels)
            )
            dates <- c(\(dateColumns.map(quoted).joined(separator: ", ")))
            \(weekHelper)
            \(read)
            df$referral_number <- as.integer(df$referral_number)
            df$disclosed <- as.logical(df$disclosed)
            for (column in names(levels)) {
              unknown <- setdiff(unique(na.omit(df[[column]])), levels[[column]])
              if (length(unknown) > 0) stop(column, ": codes not in the codebook: ", paste(unknown, collapse = ", "))
              df[[column]] <- factor(df[[column]], levels = levels[[column]])
            }
            for (column in dates) {
              text <- df[[column]]
              df[[column]] <- \(convert)
            }
            """
    }

    static func stataRecipe(config: TrialConfig, precision: DatePrecision, format: ExportFormat) -> String {
        guard format == .csv else {
            return "Stata has no JSON Lines reader: export with `--format csv` and use the recipe in that export's codebook."
        }
        let coded = levels(config).map { name, values -> String in
            let labels = values.enumerated().map { "\($0.offset + 1) \(quoted($0.element))" }.joined(separator: " ")
            return """
                label define \(name)_codes \(labels.isEmpty ? "1 \"(none)\"" : labels), replace
                encode \(name), generate(coded) label(\(name)_codes) noextend
                drop \(name)
                rename coded \(name)
                """
        }.joined(separator: "\n")
        let dateLines: String = dateColumns.map { c -> String in
            switch precision {
            case .day:
                return "generate double coded = date(\(c), \"YMD\")\nformat coded %td\ndrop \(c)\nrename coded \(c)"
            case .month:
                return "generate double coded = monthly(\(c), \"YM\")\nformat coded %tm\ndrop \(c)\nrename coded \(c)"
            case .week:
                return """
                    generate double jan4 = mdy(1, 4, real(substr(\(c), 1, 4)))
                    generate double coded = jan4 - mod(dow(jan4) + 6, 7) + 7 * (real(substr(\(c), 7, 2)) - 1)
                    format coded %td
                    drop \(c) jan4
                    rename coded \(c)
                    """
            }
        }.joined(separator: "\n")
        return """
            (Not run in CI: Stata is not installable there. `encode … noextend` stops on a code the codebook does not list.)

            <!-- recipe: stata -->
            ```stata
            import delimited using "allocations.csv", varnames(1) stringcols(_all) bindquote(strict) encoding("utf-8") clear
            destring referral_number, replace
            generate byte coded = cond(disclosed == "true", 1, cond(disclosed == "false", 0, .))
            drop disclosed
            rename coded disclosed
            \(coded)
            \(dateLines)
            ```
            """
    }
}
