// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "whp",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "whp", targets: ["whp"]),
        .library(name: "WHPCore", targets: ["WHPCore"]),
        .library(name: "WHPStore", targets: ["WHPStore"]),
        .library(name: "WHPService", targets: ["WHPService"]),
        .library(name: "WHPPostgres", targets: ["WHPPostgres"]),
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
        // OpenSSL's libcrypto (Debian: libssl-dev). Kept out of the public surface:
        // only WHPCore imports it, internally.
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        // The pure domain: ids, dates, draws, chain, config rules, locks, views.
        .target(
            name: "WHPCore",
            dependencies: [
                "COpenSSL",
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),
        // The durable edge: SQLite through GRDB.
        .target(
            name: "WHPStore",
            dependencies: [
                "WHPCore",
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
        // The wire protocol: strict JSON, requests, ops, the stdio loop.
        .target(
            name: "WHPService",
            dependencies: [
                "WHPCore", "WHPStore",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "whp",
            dependencies: [
                "WHPCore", "WHPStore", "WHPPostgres", "WHPService",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "WHPCoreTests",
            dependencies: ["WHPCore"],
            resources: [.copy("Fixtures")]
        ),
        // Doors for the end-to-end suites: the real `whp` binary, temp trials, a live serve.
        .target(name: "WHPTestSupport", dependencies: ["WHPStore", "WHPPostgres", .product(name: "Logging", package: "swift-log")], path: "Tests/Support"),
        .testTarget(
            name: "WHPServiceTests",
            dependencies: ["WHPCore", "WHPStore", "WHPService", "WHPTestSupport", "whp"]
        ),
        .testTarget(
            name: "WHPEvaluationTests",
            dependencies: ["WHPCore", "WHPTestSupport", "whp"]
        ),
        .testTarget(
            name: "WHPReliabilityTests",
            dependencies: ["WHPCore", "WHPStore", "WHPService", "WHPTestSupport", "whp"]
        ),
        .testTarget(
            name: "WHPPostgresTests",
            dependencies: ["WHPTestSupport", "whp"]
        ),
        .testTarget(
            name: "WHPCLITests",
            dependencies: ["WHPCore", "WHPStore", "WHPTestSupport", "whp"]
        ),
    ]
)
