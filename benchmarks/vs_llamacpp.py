#!/usr/bin/env python3
"""prge's batched forward vs llama.cpp (llama-cpp-python) on the same GGUF, tokens and threads.

Runs `prge bench --json` (which also writes the token ids it ran), then times llama_decode over
exactly those tokens with logits only at each sequence's last token, as prge computes them:
  forward     the 32 SST-2 prompts (24..32 tokens each) of prge's forward benchmark as ONE
              decode with 32 sequence ids (n_seq_max 32, n_ubatch = all 892 tokens), with the
              unified KV cache on and off; the better counts as llama.cpp's number
  pp512       one 512-token sequence (llama-bench's pp512 shape), n_ubatch 512
on the Q4_1 file (llama.cpp's default path: activations quantized to 8 bits in the matmuls)
and on an F32 copy of the same weights (made once with the gguf package under build/).

Usage: python3 benchmarks/vs_llamacpp.py [--prge build/bin/prge] [--threads 2] [--steps 5]
Needs: llama-cpp-python 0.3.x, gguf, numpy (all importable by this python).
"""
import argparse
import ctypes
import os
import statistics
import sys
import time

import llama_cpp as L

import prge_bench

HERE = os.path.dirname(os.path.abspath(__file__))
F32_COPY = os.path.join(prge_bench.ROOT, "build", "smollm2-135m-f32.gguf")


def f32_copy(src):
    """The F32 copy of `src` (every tensor dequantized exactly), made once."""
    if not os.path.exists(F32_COPY):
        sys.path.insert(0, os.path.join(prge_bench.ROOT, "scripts", "fixtures"))
        from make_forward_fixtures import dequantize_model
        os.makedirs(os.path.dirname(F32_COPY), exist_ok=True)
        dequantize_model(src, F32_COPY + ".tmp")
        os.rename(F32_COPY + ".tmp", F32_COPY)
    return F32_COPY


class Llama:
    """One model and context sized for `n_tokens` tokens in `n_seq` sequences in one ubatch."""

    def __init__(self, path, threads, n_tokens, n_seq, unified):
        mp = L.llama_model_default_params()
        self.model = L.llama_model_load_from_file(path.encode(), mp)
        cp = L.llama_context_default_params()
        # Per-sequence KV cells are n_ctx / n_seq_max without a unified cache: size for both.
        cp.n_ctx = max(n_tokens, 64 * n_seq)
        cp.n_batch = cp.n_ubatch = n_tokens
        cp.n_seq_max = n_seq
        cp.kv_unified = unified
        cp.n_threads = cp.n_threads_batch = threads
        self.ctx = L.llama_init_from_model(self.model, cp)
        self.mem = L.llama_get_memory(self.ctx)

    def close(self):
        L.llama_free(self.ctx)
        L.llama_model_free(self.model)

    def decode_seconds(self, seqs, reps):
        """Median seconds of one llama_decode of `seqs` (each its own sequence id, logits at
        its last token), on an empty KV cache each time; one untimed warm-up."""
        n = sum(map(len, seqs))
        batch = L.llama_batch_init(n, 0, 1)
        i = 0
        for s, toks in enumerate(seqs):
            for p, t in enumerate(toks):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = t, p, 1
                batch.seq_id[i][0] = s
                batch.logits[i] = int(p == len(toks) - 1)
                i += 1
        batch.n_tokens = n
        times = []
        for it in range(reps + 1):
            L.llama_memory_clear(self.mem, True)
            t0 = time.perf_counter()
            rc = L.llama_decode(self.ctx, batch)
            L.llama_synchronize(self.ctx)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")
            if it:
                times.append(time.perf_counter() - t0)
        L.llama_batch_free(batch)
        return statistics.median(times)


def measure(path, tokens, threads, reps):
    """tokens/s of llama.cpp on the forward batch (each layout) and pp512."""
    fwd, long = tokens["forward"], tokens["long"]
    n_fwd = sum(map(len, fwd))
    out = {}
    for unified in (True, False):
        m = Llama(path, threads, n_fwd, len(fwd), unified)
        out[f"forward, 1 decode, kv_unified={unified}"] = n_fwd / m.decode_seconds(fwd, reps)
        m.close()
    m = Llama(path, threads, len(long), 1, True)
    out["pp512"] = len(long) / m.decode_seconds([long], reps)
    m.close()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    prge_bench.add_args(ap)
    args = ap.parse_args()
    quiet = L.llama_log_callback(lambda level, text, data: None)   # kept alive: llama.cpp holds it
    L.llama_log_set(quiet, ctypes.c_void_p())
    L.llama_backend_init()

    load0 = prge_bench.loadavg()
    p, tokens = prge_bench.run(args)
    models = {"Q4_1": args.model, "F32 copy": f32_copy(args.model)}
    res = {}
    for name, path in models.items():
        prge_bench.wait_idle(args)
        res[name] = measure(path, tokens, args.threads, args.steps)
    load1 = prge_bench.loadavg()

    mode = p["mode"]
    print(f"\nprge vs llama.cpp {L.__version__} (llama-cpp-python), {args.threads} threads, {p['cpu']}")
    print(f"load average {load0:.2f} before, {load1:.2f} after; medians of {args.steps}; logits at last tokens only")
    print(f"forward batch: {p['forward_sequences']} SST-2 prompts, {p['forward_tokens']} tokens; pp512: 512 tokens\n")
    rows = [["what", "tokens/s", "prge / this"]]
    for shape, key in (("forward", "forward_tokens_per_second"), ("pp512", "forward_tokens_per_second_512")):
        for m in (mode, "fp32"):
            v = p[key if m == mode else f"{key}_fp32"]
            rows.append([f"prge {shape}, {m}", f"{v:.1f}", ""])
        ours = p[key]
        for name, r in res.items():
            for layout, v in r.items():
                if (shape == "pp512") == (layout == "pp512"):
                    rows.append([f"llama.cpp {name}, {layout}", f"{v:.1f}", f"{ours / v:.2f}"])
        best = max(v for r in res.values() for layout, v in r.items() if (shape == "pp512") == (layout == "pp512"))
        rows.append([f"=> prge {mode} / llama.cpp best ({shape})", "", f"{ours / best:.2f}  (target >= 1.5)"])
        rows.append([])
    prge_bench.table(rows)
    prge_bench.save(args, {"load_avg": [load0, load1], "prge": p, "llama_cpp_tokens_per_s": res})


if __name__ == "__main__":
    main()
