#!/usr/bin/env python3
"""prge's P-RGE step vs the same algorithm in PyTorch on CPU (../shared/anchors/torch_prge.py).

One run: `prge bench --json`, then torch_prge.py `bench` (P-RGE, q 4, b 4, LoRA-FA r 16 alpha 32
on all 7 projections) in fp32 and bf16, and torch_prge.py `infer` (forward of 32 prompts) in
fp32 and bf16, each torch configuration in its own process. With PRGE_STANDARD_BATCH=1 the
anchors script picks the same SST-2 rows as prge (the first with 24..32 prompt tokens, file
order) but right-pads them to the longest, so torch runs a few more token rows than prge
(which never pads); both counts are printed. Run through benchmarks/vs_torch.sh, which makes
the virtual environment.
"""
import argparse
import json
import os
import subprocess
import sys

import prge_bench

ANCHOR = os.path.join(os.path.dirname(prge_bench.ROOT), "shared", "anchors", "torch_prge.py")
CACHE = os.path.join(prge_bench.ROOT, "build", "smollm2-135m-f32")


def torch_run(args, cmd, *extra):
    """The RESULT object of one torch_prge.py run, in a fresh process (clean peak RSS)."""
    env = dict(os.environ, PRGE_STANDARD_BATCH="1", PRGE_MODEL_DIR=os.path.dirname(os.path.abspath(args.model)),
               PRGE_SST2_DIR=os.path.dirname(os.path.abspath(args.data)))
    argv = [sys.executable, ANCHOR, cmd, "--cache", CACHE, "--threads", str(args.threads),
            "--steps", str(args.steps), "--warmup", "1", *extra]
    prge_bench.wait_idle(args)
    print("$", " ".join(argv[1:]), flush=True)
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads([l for l in out.splitlines() if l.startswith("RESULT ")][-1][7:])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    prge_bench.add_args(ap)
    args = ap.parse_args()
    load0 = prge_bench.loadavg()
    p, _ = prge_bench.run(args)
    step = ["--method", "prge", "--q", "4", "--batch", "4", "--r", "16", "--alpha", "32", "--targets", "all"]
    t = {dt: torch_run(args, "bench", *step, "--dtype", dt) for dt in ("fp32", "bf16")}
    inf = {dt: torch_run(args, "infer", "--batch", "32", "--dtype", dt) for dt in ("fp32", "bf16")}
    load1 = prge_bench.loadavg()

    mode = p["mode"]
    sp, s32 = p["step_seconds"], p["step_seconds_fp32"]
    tf, tb = t["fp32"]["median_s_per_step"], t["bf16"]["median_s_per_step"]
    print(f"\nprge vs PyTorch {args.threads} threads, {p['cpu']}; load average {load0:.2f} before, {load1:.2f} after")
    print(f"step: q 4, b 4, r 16, alpha 32, all 7 projections; medians of {args.steps} steps after 1 warm-up")
    print(f"tokens per copy: prge {p['step_tokens_per_copy']} (no padding), torch {t['fp32']['real_tokens_per_copy']} real "
          f"padded to {4 * t['fp32']['seq_len']} ({t['fp32']['seq_len']} per row); 8 copies each\n")
    rows = [["P-RGE step", "seconds", "torch fp32 / this", "torch bf16 / this", "peak RSS MiB"],
            [f"prge {mode} (default)", f"{sp:.3f}", f"{tf / sp:.2f}  (target >= 3)", f"{tb / sp:.2f}  (target >= 1.5)",
             f"{p['peak_rss_mb']:.0f}"],
            ["prge fp32", f"{s32:.3f}", f"{tf / s32:.2f}", f"{tb / s32:.2f}", ""],
            [f"prge sequential RGE {mode}", f"{p['step_seconds_rge']:.3f}", f"{tf / p['step_seconds_rge']:.2f}", "", ""],
            ["torch fp32", f"{tf:.3f}", "1.00", f"{tb / tf:.2f}", f"{t['fp32']['peak_rss_during_steps_mib']:.0f}"],
            ["torch bf16", f"{tb:.3f}", f"{tf / tb:.2f}", "1.00", f"{t['bf16']['peak_rss_during_steps_mib']:.0f}"]]
    prge_bench.table(rows)
    print(f"\ntorch steps saw other processes use up to {t['fp32']['max_other_cpu_frac']:.0%} (fp32) / "
          f"{t['bf16']['max_other_cpu_frac']:.0%} (bf16) of the CPU")

    n = p["forward_tokens"]
    print(f"\nforward, {p['forward_sequences']} prompts = {n} real tokens (torch pads to "
          f"{inf['fp32']['B']} x {inf['fp32']['seq_len']}); tokens/s counts real tokens only")
    rows = [["forward", "tokens/s", "prge / this"]]
    for m in (mode, "fp32"):
        rows.append([f"prge {m}, full logits at last tokens",
                     f"{p['forward_tokens_per_second' + ('' if m == mode else '_fp32')]:.1f}", ""])
    for dt in ("fp32", "bf16"):
        for kind in ("trunk_plus_2_label_rows", "hf_full_logits"):
            v = n / inf[dt][kind]["median_s"]
            rows.append([f"torch {dt}, {kind}", f"{v:.1f}", f"{p['forward_tokens_per_second'] / v:.2f}"])
    prge_bench.table(rows)
    prge_bench.save(args, {"load_avg": [load0, load1], "prge": p, "torch_step": t, "torch_infer": inf})


if __name__ == "__main__":
    main()
