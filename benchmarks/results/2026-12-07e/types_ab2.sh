#!/bin/sh
OUT=${OUT:-benchmarks/results/2026-12-07e/types-ab-q6k.jsonl}
for r in 1 2; do
  for m in build/models/smollm2-Q4_K_M.gguf build/models/smollm2-Q6_K.gguf; do
    for b in /tmp/q/prge-old build/bin/prge; do
      j=$($b bench --model $m --json --steps 5 2>/dev/null)
      echo "{\"round\": $r, \"binary\": \"$b\", \"model\": \"$(basename $m)\", \"bench\": $j}" >> $OUT
    done
  done
done
