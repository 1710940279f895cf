#!/bin/sh
# The Swift test suite under AddressSanitizer and ThreadSanitizer, and the C ABI tests
# (Tests/capi/test_capi.c, test_misuse.c) against an AddressSanitizer build of libprge.so.
#   scripts/sanitize.sh                 all three (asan, tsan, capi)
#   scripts/sanitize.sh asan tsan       some of them
#   SAN_FILTER=Tokenizer scripts/sanitize.sh tsan   only the Swift tests matching a pattern
# Builds are release builds (-O: a debug build runs the forward-pass tests too slowly, and
# -enable-testing for the tests' @testable import; the C ABI build shares it) with
# sanitizer instrumentation of the Swift and the C targets (SwiftPM's --sanitize passes
# -sanitize= to swiftc and -fsanitize= to clang), in .build/san/<sanitizer> so the normal build
# stays as it is. Everything runs under nice -n 19 with one build job. Needs the reference model
# (models/, or PRGE_MODEL). Exit status: non-zero if any part failed or a sanitizer reported.
# Results of the last run: docs/ROBUSTNESS.md.
set -u
cd "$(dirname "$0")/.."
PARTS=${*:-asan tsan capi}
SWIFT=${SWIFT:-swift}
MODEL=${PRGE_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
LOGS=.build/san/logs
mkdir -p $LOGS
# Swift's own crash backtracer competes with the sanitizers for the crash: leave it to them.
export SWIFT_BACKTRACE=enable=no
# Leaks: the Swift runtime keeps type metadata and caches alive for the process's life, which
# LeakSanitizer reports at exit; leak checking is on for the C ABI tests only (see capi below).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=0}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=0:second_deadlock_stack=1:report_signal_unsafe=0}
filter=""
[ -n "${SAN_FILTER:-}" ] && filter="--filter $SAN_FILTER"
failed=""

swift_tests() { # $1 = address | thread
    san=$1
    echo "== swift test --sanitize $san (build: $LOGS/$san.build.log, run: $LOGS/$san.test.log)"
    start=$(date +%s)
    if ! nice -n 19 $SWIFT build -c release --build-tests --jobs 1 --sanitize $san -Xswiftc -enable-testing \
            --scratch-path .build/san/$san >$LOGS/$san.build.log 2>&1; then
        tail -20 $LOGS/$san.build.log
        failed="$failed $san-build"
        return
    fi
    # shellcheck disable=SC2086
    nice -n 19 env PRGE_MODEL=$(realpath $MODEL) $SWIFT test -c release --skip-build --sanitize $san \
        --scratch-path .build/san/$san $filter >$LOGS/$san.test.log 2>&1
    rc=$?
    reports=$(grep -c -E '^(==[0-9]+==ERROR: AddressSanitizer|WARNING: ThreadSanitizer)' $LOGS/$san.test.log)
    echo "   exit $rc, $reports sanitizer reports, $(( $(date +%s) - start )) s"
    grep -E '^(✔|✘) Test run|Executed .* tests' $LOGS/$san.test.log | tail -2
    [ "$rc" -eq 0 ] && [ "$reports" -eq 0 ] || failed="$failed $san"
}

capi_asan() {
    echo "== C ABI tests against an ASan libprge.so (logs: $LOGS/capi.*)"
    [ -f build/include/prge.h ] || { mkdir -p build/include && cp Include/prge.h build/include/; }
    { echo '{ global:'; sed -n 's/^[a-z][^(]*[ *]\(prge_[a-z0-9_]*\)(.*/    \1;/p' Include/prge.h; echo '  local: *; };'; } \
        >.build/san/libprge.map
    if ! nice -n 19 $SWIFT build -c release --jobs 1 --sanitize address -Xswiftc -enable-testing --product prge \
            --scratch-path .build/san/address -Xlinker --version-script=$(realpath .build/san/libprge.map) \
            >$LOGS/capi.build.log 2>&1; then
        tail -20 $LOGS/capi.build.log
        failed="$failed capi-build"
        return
    fi
    lib=.build/san/address/release
    rt=$(dirname "$(clang -print-file-name=libclang_rt.asan-x86_64.so 2>/dev/null || echo /)")
    [ -f "$rt/libclang_rt.asan-x86_64.so" ] || rt=$(dirname "$(find /opt/swift/usr/lib -name libclang_rt.asan-x86_64.so | head -1)")
    for t in test_capi test_misuse; do
        clang -std=c11 -g -fsanitize=address -shared-libasan -Wall -Wextra -Werror -pedantic -pthread \
            -IInclude Tests/capi/$t.c -L$lib -lprge -lm -Wl,-rpath,"$(realpath $lib)" -Wl,-rpath,"$rt" \
            -o .build/san/$t-asan || { failed="$failed $t-compile"; continue; }
        # Leak checking on: what libprge allocates for a host must be freed by the *_free calls
        # and at thread exit; the Swift runtime's process-lifetime allocations are suppressed.
        printf 'leak:swift_\nleak:libswiftCore\nleak:_swift_\nleak:swift::\n' >.build/san/lsan.supp
        nice -n 19 env ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 LSAN_OPTIONS=suppressions=$(realpath .build/san/lsan.supp) \
            .build/san/$t-asan $MODEL >$LOGS/capi.$t.log 2>&1
        rc=$?
        echo "   $t: exit $rc: $(grep -E 'passed, .* failed' $LOGS/capi.$t.log | tail -1)"
        grep -m3 -E 'ERROR: (Address|Leak)Sanitizer|SUMMARY' $LOGS/capi.$t.log
        [ $rc -eq 0 ] || failed="$failed $t"
    done
}

for p in $PARTS; do
    case $p in
        asan) swift_tests address ;;
        tsan) swift_tests thread ;;
        capi) capi_asan ;;
        *) echo "unknown part $p (asan, tsan, capi)"; exit 2 ;;
    esac
done
if [ -n "$failed" ]; then echo "FAILED:$failed"; exit 1; fi
echo "sanitizers: all clean ($PARTS)"
