#!/usr/bin/env python3
"""Where a P-RGE step's time goes, from `perf script -F pid,tid,period,ip,sym | swift demangle
--simplified` of `prge bench --only training` (see profile_step.sh).

Wall time is read off the MAIN thread: it runs every operation of the forward in order and,
inside a parallel region, does its share of the tasks and then waits for the pool at the
barrier, so each of its samples (leaf to root call chain) belongs to exactly one operation of
the step. Worker threads only show task bodies, which cannot tell a LoRA GEMM from a base one;
their samples give the idle fraction (time spent in pool_worker itself, waiting for work).
Samples of model loading, data parsing and the untimed warm-up are not separated from the timed
steps, so run several steps (setup is reported on its own line and left out of the shares).
"""
import re
import sys
from collections import Counter

# First match wins; each rule: (category, frames that must all be on the chain; "leaf:" = the
# sampled function itself).
RULES = [
    ("setup (load, tokenizer, data)", ["Model.init"]),
    ("setup (load, tokenizer, data)", ["BenchWorkload.init"]),
    ("B update (z regenerated, axpy)", ["applyUpdate"]),
    ("RNG: z for the 2q copies", ["prge_lora_b", "fillNormal"]),
    ("LoRA terms: (xAᵀ)·(B±εz)ᵀ with B±εz built per tile (prge_lora_b)", ["prge_lora_b"]),
    ("LoRA terms: x·Aᵀ GEMMs (A stacked per input)", ["loraInput"]),
    ("RNG: z for the 2q copies", ["addLoRA", "fillNormal"]),                    # builds before prge_lora_b
    ("LoRA terms: GEMMs and B±εz loops in addLoRA (builds before prge_lora_b)", ["addLoRA"]),
    ("attention (per sequence, head)", ["Context.attention"]),
    ("RoPE", ["Context.applyRope"]),
    ("linear layers (quantized GEMM)", ["Context.layer", "prge_matmul"]),
    ("RMSNorm, SwiGLU (ops.c)", ["prge_rms_norm"]),
    ("RMSNorm, SwiGLU (ops.c)", ["prge_swiglu"]),
    ("other in the layer (bookkeeping)", ["Context.layer"]),
    ("output head (label rows) ", ["outputLogits"]),
    ("embedding, copy replication, final norm", ["Context.hidden"]),
    ("loss (cross-entropy)", ["copyLosses"]),
]


def samples(stream):
    """(tid, period, [frames leaf → root]) for each sample."""
    head, frames = None, []
    for line in stream:
        m = re.match(r"^\s*(\d+)/(\d+)\s+(\d+)", line)
        if m:
            head, frames = (int(m.group(1)), int(m.group(2)), int(m.group(3))), []
        elif line.strip() and head:
            frames.append(line.strip().split(None, 1)[-1])
        elif head:
            yield head, frames
            head = None
    if head:
        yield head, frames


def category(frames):
    for name, needs in RULES:
        if all(frames and n[5:] in frames[0] if n.startswith("leaf:") else any(n in f for f in frames) for n in needs):
            return name
    return "other (step bookkeeping, kernel)"


def main():
    main_t, worker = Counter(), Counter()
    for (pid, tid, period), frames in samples(sys.stdin):
        if tid == pid:
            main_t[category(frames)] += period
        else:
            worker["idle (pool_worker waiting)" if frames and frames[0].startswith("pool_worker") else "busy"] += period
    setup = sum(v for k, v in main_t.items() if k.startswith("setup"))
    total = sum(main_t.values()) - setup
    print(f"main thread: {total / 1e9:.2f} s sampled in the step(s), {setup / 1e9:.2f} s setup (left out)")
    for k, v in main_t.most_common():
        if not k.startswith("setup"):
            print(f"  {100 * v / total:5.1f}%  {k}")
    w = sum(worker.values())
    if w:
        print(f"worker threads: {100 * worker['idle (pool_worker waiting)'] / w:.1f}% of their samples idle in pool_worker")


if __name__ == "__main__":
    main()
