#!/usr/bin/env bash
# The accuracy benchmark (issue 3): for each task, dev accuracy of the reference model with no
# adapter, then `prge train` with the library's default recipe for MINUTES, then dev accuracy
# of the best adapter. Training never sees the dev file's labels except through the best-adapter
# selection on dev (as the recipe does); report the dev numbers as such.
#
#   benchmarks/accuracy.sh [MINUTES | STEPSs] [TASK ...]     default: 20 minutes, sst2
#   e.g. benchmarks/accuracy.sh 5 mr cr subj        (5 minutes each)
#        THREADS=1 benchmarks/accuracy.sh 600s mr   (600 steps, one thread: runs side by side)
#        SEED=1 benchmarks/accuracy.sh 20 sst2      (another seed; the default is the recipe's)
#
# Prints one line per task and writes build/accuracy/<task>[-seedS].{log.jsonl,gguf,json}.
# For sst2 it also scores the adapter on SST-2 sentences that are in neither sst2 file
# (benchmarks/sst2_unseen.py): the dev numbers include the best-adapter selection, these do not.
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-20}; shift || true
case $budget in *s) limit=(--steps "${budget%s}");; *) limit=(--minutes "$budget");; esac
tasks=("$@"); [ ${#tasks[@]} -gt 0 ] || tasks=(sst2)
data=${PRGE_DATA:-../shared/data}
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
prge=build/bin/prge
[ -x "$prge" ] || make --no-print-directory all >/dev/null
mkdir -p build/accuracy
printf '%-8s %9s %9s %7s %8s %6s %s\n' task zero-shot after steps budget n "unseen (zero-shot → after, n)"
for t in "${tasks[@]}"; do
    out=build/accuracy/$t${SEED:+-seed$SEED}
    if [ -f "$data/$t/train.jsonl" ]; then split=(--train "$data/$t/train.jsonl" --dev "$data/$t/dev.jsonl")
    else split=(--dev "$data/$t/dev.jsonl" --dev-split 200); fi   # dev-only tasks (boolq): train on the rest
    before=$($prge eval --model "$model" --task "$t" --data "$data/$t/dev.jsonl" --json)
    $prge train --model "$model" --task "$t" "${split[@]}" --out "$out.gguf" \
        "${limit[@]}" ${SEED:+--seed "$SEED"} --threads "${THREADS:-0}" --log "$out.log.jsonl" --json > "$out.json"
    after=$($prge eval --model "$model" --task "$t" --data "$data/$t/dev.jsonl" --adapter "$out.gguf" --json)
    unseen=("{}" "{}")
    if [ "$t" = sst2 ] && PRGE_DATA=$data python3 benchmarks/sst2_unseen.py build/accuracy/sst2-unseen.jsonl 2>/dev/null; then
        unseen=("$($prge eval --model "$model" --task sst2 --data build/accuracy/sst2-unseen.jsonl --json)"
                "$($prge eval --model "$model" --task sst2 --data build/accuracy/sst2-unseen.jsonl --adapter "$out.gguf" --json)")
    fi
    python3 - "$t" "$before" "$after" "$out.json" "$budget" "${unseen[@]}" <<'PY'
import json, sys
t, b, a, summary, minutes = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4], sys.argv[5]
ub, ua = json.loads(sys.argv[6]), json.loads(sys.argv[7])
steps = json.loads(open(summary).read().strip().splitlines()[-1]).get("steps", "?")
extra = f" {100*ub['accuracy']:.1f}% → {100*ua['accuracy']:.1f}% ({ua['n']})" if ua else ""
print(f"{t:<8} {100*b['accuracy']:8.1f}% {100*a['accuracy']:8.1f}% {steps!s:>7} {minutes:>8} {a['n']:6d}{extra}")
PY
done
