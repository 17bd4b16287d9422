// swift-tools-version:6.2
import PackageDescription

/// CI builds with every warning an error (`WHP_STRICT=1`, set by `.ci/run`);
/// a developer's build only warns.
let strict: [SwiftSetting] = Context.environment["WHP_STRICT"] == "1" ? [.treatAllWarnings(as: .error)] : []

// Modules by reason to change (docs/architecture.md): the pure domain and its
// codecs at the centre, the edges (config files, the store, the stdio loop)
// around it, an application layer that every command calls, and the `whp`
// executable, which only parses arguments and prints.
let package = Package(
    name: "whp",
    // Linux is where whp runs and is tested (CI: Debian, Swift 6). The macOS
    // floor is what the code's APIs need (Synchronization's Mutex); it is not
    // tested there.
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "whp", targets: ["whp"]),
        // Libraries for the benchmark package (Benchmarks/), which measures each layer.
        .library(name: "WHPCrypto", targets: ["WHPCrypto"]),
        .library(name: "WHPJSON", targets: ["WHPJSON"]),
        .library(name: "WHPDomain", targets: ["WHPDomain"]),
        .library(name: "WHPStore", targets: ["WHPStore"]),
        .library(name: "WHPAudit", targets: ["WHPAudit"]),
        .library(name: "WHPEvaluation", targets: ["WHPEvaluation"]),
        .library(name: "WHPService", targets: ["WHPService"]),
        .library(name: "WHPApp", targets: ["WHPApp"]),
    ],
    dependencies: [
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // The PostgreSQL store (issue #6): several `whp serve` instances, one trial.
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.0"),
    ],
    targets: [
        // OpenSSL's libcrypto (Debian: libssl-dev). Kept off the public
        // surface: only WHPCrypto imports it, internally.
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        // The Swift side of the shim: SHA-256, HMAC-SHA256, RAND_bytes, hex, enc().
        .target(name: "WHPCrypto", dependencies: ["COpenSSL"]),
        // A strict JSON codec of our own: the wire, bundles and stored payloads.
        .target(name: "WHPJSON"),
        // The allocation domain: claimants, dates, arms, strata, draws, locks,
        // views, gatekeeper rules, and the typed event spine. No I/O.
        .target(name: "WHPDomain", dependencies: ["WHPCrypto", "WHPJSON"]),
        // district-config on disk, parsed with TOMLKit into the domain's TrialConfig.
        .target(
            name: "WHPConfig",
            dependencies: ["WHPDomain", .product(name: "TOMLKit", package: "TOMLKit")]
        ),
        // The auditor: re-derives a trial from its log, event by event.
        .target(name: "WHPAudit", dependencies: ["WHPDomain", "WHPCrypto", "WHPJSON"]),
        // Evaluation: export rows, codebook, CONSORT, balance and statistics.
        .target(name: "WHPEvaluation", dependencies: ["WHPDomain", "WHPCrypto", "WHPJSON"]),
        // The durable edge: the store over one SQL seam, SQLite through GRDB, key files.
        .target(
            name: "WHPStore",
            dependencies: [
                "WHPDomain", "WHPCrypto", "WHPJSON",
                .product(name: "GRDB", package: "GRDB.swift"),
                // The C API under GRDB, for the hot statements (bound and stepped directly).
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The same store on PostgreSQL, through vapor/postgres-nio: chosen by
        // `--store postgres://…`, for several instances sharing one trial.
        .target(
            name: "WHPPostgres",
            dependencies: [
                "WHPStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The wire protocol: request decoding, the ops, the in-process service
        // and the stdio loop with group commit.
        .target(
            name: "WHPService",
            dependencies: [
                "WHPDomain", "WHPCrypto", "WHPJSON", "WHPStore",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The application layer: init, verify, export, audit bundle, migrate,
        // reports, demo, serve setup. Everything a command does.
        .target(
            name: "WHPApp",
            dependencies: [
                "WHPDomain", "WHPCrypto", "WHPJSON", "WHPConfig", "WHPAudit", "WHPEvaluation",
                "WHPStore", "WHPPostgres", "WHPService",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The executable: argument parsing and printing only.
        .executableTarget(
            name: "whp",
            dependencies: [
                "WHPApp", "WHPEvaluation",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The testing module: doors and doubles for the suites (the real binary,
        // temp trials, an in-process service with a steppable clock, an in-memory
        // log handler, tampering the way an insider would).
        .target(
            name: "WHPTestSupport",
            dependencies: [
                "WHPApp", "WHPDomain", "WHPCrypto", "WHPJSON", "WHPStore", "WHPPostgres", "WHPService",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/Support"
        ),
        .testTarget(
            name: "WHPCoreTests",
            dependencies: ["WHPDomain", "WHPCrypto", "WHPJSON", "WHPConfig", "WHPAudit", "WHPEvaluation"],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "WHPServiceTests",
            dependencies: ["WHPDomain", "WHPCrypto", "WHPJSON", "WHPStore", "WHPService", "WHPApp", "WHPTestSupport", "whp"]
        ),
        .testTarget(
            name: "WHPEvaluationTests",
            dependencies: ["WHPDomain", "WHPCrypto", "WHPJSON", "WHPEvaluation", "WHPApp", "WHPTestSupport", "whp"]
        ),
        .testTarget(
            name: "WHPReliabilityTests",
            dependencies: ["WHPDomain", "WHPCrypto", "WHPJSON", "WHPStore", "WHPService", "WHPTestSupport", "whp"]
        ),
        .testTarget(
            name: "WHPPostgresTests",
            dependencies: ["WHPPostgres", "WHPTestSupport", "whp"]
        ),
        .testTarget(
            name: "WHPCLITests",
            dependencies: ["WHPDomain", "WHPCrypto", "WHPJSON", "WHPStore", "WHPTestSupport", "whp"]
        ),
    ]
)

for target in package.targets where target.type != .system {
    target.swiftSettings = (target.swiftSettings ?? []) + strict
}
