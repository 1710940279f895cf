#!/bin/sh
# Builds the fuzz targets into fuzz/.build (git-ignored):
#   prge-fuzz   Swift targets (gguf, tokenizer, config, jsonl): Sources/PRGE and fuzz/Sources/*.swift
#               compiled as one module with swiftc -sanitize=fuzzer,address, the C kernels with
#               clang -fsanitize=fuzzer-no-link,address.
#   prged-fuzz  C target (request, daemon-config): the daemon's parsing code (Sources/prged/
#               protocol.c, jsonparse.c, config.c, log.c) with clang -fsanitize=fuzzer,address.
# The Swift module must be named PRGE (the sources refer to PRGE.rngVersion).
# Heavy: run it under nice on a shared machine (run.sh does).
set -eu
cd "$(dirname "$0")/.."
OUT=fuzz/.build
mkdir -p "$OUT/obj"
CLANG=${CLANG:-clang}
SWIFTC=${SWIFTC:-swiftc}
JSONC_CFLAGS=$(pkg-config --cflags json-c)

echo "== C kernels (ASan + coverage)"
for c in Sources/PRGEKernels/*.c; do
    o="$OUT/obj/$(basename "$c" .c).o"
    [ "$o" -nt "$c" ] && [ "$o" -nt Sources/PRGEKernels/include/prge_kernels.h ] && continue
    $CLANG -O2 -g -fno-math-errno -fsanitize=fuzzer-no-link,address -ISources/PRGEKernels/include \
        -c "$c" -o "$o"
done

echo "== prge-fuzz (swiftc -sanitize=fuzzer,address; a few minutes)"
# Run from $OUT: swiftc may leave module files (PRGE-1.swiftmodule, ...) in its working directory.
ROOT=$(pwd)
# shellcheck disable=SC2046
(cd "$OUT" && $SWIFTC -O -g -sanitize=fuzzer,address -parse-as-library -wmo -num-threads 1 -module-name PRGE \
    -I "$ROOT/fuzz/module" -I "$ROOT/Sources/CJSONC" -Xcc -I/usr/include/json-c \
    $(find "$ROOT/Sources/PRGE" -name '*.swift' | sort) "$ROOT"/fuzz/Sources/*.swift obj/*.o \
    -ljson-c -o prge-fuzz)

echo "== prged-fuzz (clang -fsanitize=fuzzer,address)"
$CLANG -std=c11 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -IInclude -ISources/prged $JSONC_CFLAGS \
    fuzz/prged/fuzz_prged.c Sources/prged/protocol.c Sources/prged/jsonparse.c \
    Sources/prged/config.c Sources/prged/log.c \
    $(pkg-config --libs json-c) -o "$OUT/prged-fuzz"
echo "built $OUT/prge-fuzz $OUT/prged-fuzz"
