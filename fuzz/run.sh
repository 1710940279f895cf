#!/bin/sh
# Builds the fuzz targets and runs each for a time budget, one after another, at the lowest CPU
# priority; then merges what each found into its committed, minimized corpus (fuzz/corpus/).
#   fuzz/run.sh                      every target, 300 s each
#   fuzz/run.sh -t 60 gguf jsonl     some targets, 60 s each
#   FUZZ_NO_BUILD=1 fuzz/run.sh ...  reuse fuzz/.build
# Targets: gguf tokenizer config jsonl (Swift, need models/SmolLM2-135M-Instruct.Q4_1.gguf for
# tokenizer and jsonl; PRGE_MODEL overrides) and request daemon-config (C, the daemon's parsers).
# A crash, trap, leak, timeout (-timeout, 10 s) or OOM (-rss_limit_mb, 2048) stops that target;
# the input lands in fuzz/.build/artifacts/<target>/ and the script exits 1 at the end.
# Reproduce one: PRGE_FUZZ_TARGET=gguf fuzz/.build/prge-fuzz FILE   (C: PRGED_FUZZ_TARGET=request
# fuzz/.build/prged-fuzz FILE). Executions per target are summed into fuzz/.build/summary.txt.
set -u
cd "$(dirname "$0")/.."
SECS=300
if [ "${1:-}" = "-t" ]; then SECS=$2; shift 2; fi
TARGETS=${*:-gguf tokenizer config jsonl request daemon-config}
B=fuzz/.build
mkdir -p $B
[ -n "${FUZZ_NO_BUILD:-}" ] || nice -n 19 fuzz/build.sh >"$B/build.log" 2>&1 || { cat "$B/build.log"; exit 1; }
# The Swift runtime's backtracer and ASan both want the crash; leave it to ASan/libFuzzer.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$(pwd)/fuzz/lsan.supp}
[ -f fuzz/seeds/gguf/tiny-llama.gguf ] || { mkdir -p $B/gen && PRGE_FUZZ_SEEDS=$B/gen $B/prge-fuzz && python3 fuzz/make_seeds.py $B/gen; }
status=0
echo "# $(date -u +%FT%TZ) $SECS s per target" >> $B/summary.txt
for t in $TARGETS; do
    case $t in
        request|daemon-config) bin=$B/prged-fuzz; export PRGED_FUZZ_TARGET=$t ;;
        *) bin=$B/prge-fuzz; export PRGE_FUZZ_TARGET=$t ;;
    esac
    mkdir -p $B/work/$t $B/artifacts/$t fuzz/corpus/$t
    dict=""; [ -f fuzz/dict/$t.dict ] && dict="-dict=fuzz/dict/$t.dict"
    echo "== $t: $SECS s"
    nice -n 19 $bin -max_total_time=$SECS -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
        -max_len=32768 -print_final_stats=1 $dict -artifact_prefix=$B/artifacts/$t/ \
        $B/work/$t fuzz/corpus/$t fuzz/seeds/$t >$B/$t.log 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' $B/$t.log | tail -1)
    echo "$t rc=$rc executions=${runs:-?}" | tee -a $B/summary.txt
    if [ $rc -ne 0 ]; then
        status=1
        grep -m3 -E 'ERROR|Fatal error|SUMMARY|deadly|timeout|out-of-memory' $B/$t.log
        continue
    fi
    # Keep the corpus small: only inputs that add coverage, over seeds + old corpus + new finds.
    rm -rf fuzz/corpus/$t.new && mkdir -p fuzz/corpus/$t.new
    # GGUF inputs are capped at 8 KiB in the committed corpus (headers; the full seeds stay in seeds/).
    maxlen=32768; [ $t = gguf ] && maxlen=8192
    nice -n 19 $bin -merge=1 -max_len=$maxlen fuzz/corpus/$t.new fuzz/corpus/$t $B/work/$t >$B/$t.merge.log 2>&1 &&
        rm -rf fuzz/corpus/$t && mv fuzz/corpus/$t.new fuzz/corpus/$t
    echo "   corpus: $(ls fuzz/corpus/$t | wc -l) files, $(du -sk fuzz/corpus/$t | cut -f1) KiB"
done
tail -n $(( $(echo $TARGETS | wc -w) + 1 )) $B/summary.txt
exit $status
