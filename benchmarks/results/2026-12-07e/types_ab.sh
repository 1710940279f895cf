#!/bin/sh
# old vs new prge bench on several weight types, alternated; JSON lines to $OUT
OUT=${OUT:-benchmarks/results/2026-12-07e/types-ab.jsonl}
for r in 1 2; do
  for m in models/SmolLM2-135M-Instruct.Q4_1.gguf build/models/smollm2-Q8_0.gguf build/models/smollm2-Q4_K_M.gguf build/models/smollm2-Q5_K_S.gguf; do
    for b in /tmp/q/prge-old build/bin/prge; do
      j=$($b bench --model $m --json --steps 5 2>/dev/null)
      echo "{\"round\": $r, \"binary\": \"$b\", \"model\": \"$(basename $m)\", \"bench\": $j}" >> $OUT
    done
  done
done
