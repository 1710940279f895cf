// swift-tools-version:6.0
// prge: on-device LoRA-FA fine-tuning by P-RGE (zeroth-order, forward passes only).
//
// Module split (see ../shared/DESIGN.md and docs/ARCHITECTURE.md):
//   PRGE         Swift engine: GGUF, tokenizer, Llama forward, LoRA, P-RGE, trainer. No C ABI, no Foundation.
//   PRGEKernels  the few hot loops (GEMM micro-kernels, thread pool) in C, so SIMD paths
//                (AVX-512/VNNI/BF16 now, NEON later) sit in one well-named place.
//   CJSONC       json-c, the one JSON parser of the project (Debian libjson-c-dev).
//   PRGECAPI     @_cdecl functions only; builds libprge.so with the Swift runtime linked statically.
//   PRGECLI      the `prge` command line.
import PackageDescription

let package = Package(
    name: "prge",
    products: [
        .library(name: "prge", type: .dynamic, targets: ["PRGECAPI"]),
        .executable(name: "prge-cli", targets: ["PRGECLI"]),
    ],
    targets: [
        .systemLibrary(name: "CJSONC", path: "Sources/CJSONC", pkgConfig: "json-c",
                       providers: [.apt(["libjson-c-dev"])]),
        .target(name: "PRGEKernels", path: "Sources/PRGEKernels",
                cSettings: [.unsafeFlags(["-O3", "-fno-math-errno"])]),
        .target(name: "PRGE", dependencies: ["PRGEKernels", "CJSONC"], path: "Sources/PRGE"),
        .target(name: "PRGECAPI", dependencies: ["PRGE"], path: "Sources/PRGECAPI",
                linkerSettings: [.unsafeFlags(["-static-stdlib"])]),
        .executableTarget(name: "PRGECLI", dependencies: ["PRGE"], path: "Sources/PRGECLI"),
        .testTarget(name: "PRGETests", dependencies: ["PRGE"], path: "Tests/PRGETests"),
    ]
)
