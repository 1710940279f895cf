#!/bin/sh
# prge bench (--json --steps 5) of the previous build (/tmp/q/prge-old) and this one, alternated,
# two rounds, on each GGUF given; JSON lines to $OUT.
#   OUT=…/types-ab.jsonl types_ab.sh models/SmolLM2-135M-Instruct.Q4_1.gguf build/models/smollm2-{Q8_0,Q4_K_M,Q5_K_S}.gguf
#   OUT=…/types-ab-q6k.jsonl types_ab.sh build/models/smollm2-{Q4_K_M,Q6_K}.gguf
for r in 1 2; do
  for m in "$@"; do
    for b in /tmp/q/prge-old build/bin/prge; do
      j=$($b bench --model "$m" --json --steps 5 2>/dev/null)
      echo "{\"round\": $r, \"binary\": \"$b\", \"model\": \"$(basename "$m")\", \"bench\": $j}" >> "$OUT"
    done
  done
done
