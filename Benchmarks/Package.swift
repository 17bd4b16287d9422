// swift-tools-version:6.1
// The benchmarks live in their own package so the main build and CI do not
// compile the benchmark harness. Run from this folder: `swift package benchmark`.
import PackageDescription

let package = Package(
    name: "whp-benchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        // Named, so the products resolve whatever the checkout folder is called.
        .package(name: "whp", path: ".."),
        // `traits: []`: the package's default traits need a runtime interposer the
        // local mirror lacks; without them the malloc/ARC counters are unavailable
        // (wall-clock, CPU and throughput metrics still work).
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.0", traits: []),
    ],
    targets: [
        .executableTarget(
            name: "WHPBench",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "WHPCrypto", package: "whp"),
                .product(name: "WHPJSON", package: "whp"),
                .product(name: "WHPDomain", package: "whp"),
                .product(name: "WHPStore", package: "whp"),
                .product(name: "WHPAudit", package: "whp"),
                .product(name: "WHPEvaluation", package: "whp"),
                .product(name: "WHPService", package: "whp"),
            ],
            path: "Benchmarks/WHPBench",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
