#!/bin/sh
# Where the standard P-RGE step's time goes: perf samples (cpu-clock, call chains by frame
# pointer) of `prge bench --only training`, grouped by operation by profile_breakdown.py.
# Usage: benchmarks/profile_step.sh [fp32|bf16|int8] [steps]   (env PRGE=prge executable, THREADS=2)
# Needs perf (apt-get install linux-perf) and `swift demangle`.
set -eu
cd "$(dirname "$0")/.."
MODE=${1:-bf16}
STEPS=${2:-5}
PRGE=${PRGE:-build/bin/prge}
DATA=build/bench-perf-$MODE.data
perf record -q -F 999 -g -o "$DATA" "$PRGE" bench --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
    --threads "${THREADS:-2}" --mode "$MODE" --only training --steps "$STEPS" --warmup 1
echo "P-RGE step, $MODE, $STEPS steps + 1 warm-up, load average $(cut -d' ' -f1 /proc/loadavg)"
perf script -i "$DATA" -F pid,tid,period,ip,sym 2>/dev/null | swift demangle --simplified |
    python3 benchmarks/profile_breakdown.py
