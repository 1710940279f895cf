#!/usr/bin/env python3
"""Perplexity of `prge perplexity` next to llama.cpp's on the same text and context size.

llama.cpp's number is computed here over llama-cpp-python's logits with llama-perplexity's
convention (tools/perplexity, default mode): the text tokenized once (BOS only if the model adds
it), ⌊tokens / ctx⌋ chunks of ctx tokens, each evaluated alone from an empty cache with its first
token replaced by BOS when the model adds BOS, and only positions ctx/2 .. ctx-2 scored (each
predicting the next token); ppl = exp(mean nll), log-softmax in double.

Two prge runs: fp32 (the reference mode) and int8 (8-bit activations in the matmuls of every
weight type its kernel multiplies as stored). Two llama.cpp runs:
  as is  its default path on the GGUF (8-bit activations in the quantized matmuls, KV cache
         f16), what `llama-perplexity -m MODEL -c CTX` reports;
  f32    the weights dequantized to F32 and an f32 KV cache: what prge fp32 should match.
Any GGUF of the reference architecture works, e.g. the other weight types of
benchmarks/requantize.py.

Usage: benchmarks/perplexity_vs_llamacpp.py [--prge build/bin/prge] [--model M] [--ctx N]... TEXTFILE...
Needs llama-cpp-python 0.3.x, gguf, numpy (not needed by the test suite).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts", "fixtures"))
from make_forward_fixtures import dequantize_model  # noqa: E402


def llama_perplexity(model_path: str, text: str, n_ctx: int, exact: bool) -> tuple[float, int]:
    from llama_cpp import Llama, llama_vocab_get_add_bos, llama_model_get_vocab
    kw = {}
    if exact:
        kw = dict(type_k=0, type_v=0, flash_attn=False)   # GGML_TYPE_F32 KV cache
    llm = Llama(model_path=model_path, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_threads=2,
                n_threads_batch=2, logits_all=True, verbose=False, **kw)
    add_bos = bool(llama_vocab_get_add_bos(llama_model_get_vocab(llm.model)))
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    if len(tokens) < 2 * n_ctx:
        raise SystemExit(f"{len(tokens)} tokens; a context of {n_ctx} needs at least {2 * n_ctx}")
    chunks, first = len(tokens) // n_ctx, n_ctx // 2
    nll, count = 0.0, 0
    for c in range(chunks):
        chunk = tokens[c * n_ctx:(c + 1) * n_ctx]
        if add_bos:
            chunk[0] = llm.token_bos()
        llm.reset()
        llm.eval(chunk)
        logits = np.asarray(llm.scores[first:n_ctx - 1], dtype=np.float64)
        mx = logits.max(axis=1, keepdims=True)
        lse = mx[:, 0] + np.log(np.exp(logits - mx).sum(axis=1))
        targets = np.asarray(chunk[first + 1:n_ctx])
        nll += float((lse - logits[np.arange(len(targets)), targets]).sum())
        count += len(targets)
    return math.exp(nll / count), chunks


def prge_perplexity(prge: str, model: str, path: str, n_ctx: int, threads: int, mode: str) -> tuple[float, int] | None:
    """prge's (ppl, chunks), or None when the text is too short for the context."""
    r = subprocess.run([prge, "perplexity", "--model", model, "--ctx", str(n_ctx), "--threads", str(threads),
                        "--mode", mode, "--json", path], capture_output=True, text=True)
    if r.returncode == 1 and "needs at least" in r.stderr:
        return None
    if r.returncode != 0:
        raise SystemExit(f"prge perplexity failed ({r.returncode}): {r.stderr.strip()}")
    j = json.loads(r.stdout)
    return j["ppl"], j["chunks"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("texts", nargs="+", metavar="TEXTFILE")
    ap.add_argument("--prge", default=os.path.join(ROOT, "build", "bin", "prge"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--ctx", type=int, action="append", help="context size; repeat for several (default 128)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    args.ctx = args.ctx or [128]

    with tempfile.TemporaryDirectory() as tmp:
        f32 = os.path.join(tmp, "model-f32.gguf")
        dequantize_model(args.model, f32)
        print(f"{'text':32s} {'ctx':>5s} {'chunks':>6s} {'prge fp32':>10s} {'llama.cpp f32':>14s} "
              f"{'prge int8':>10s} {'llama.cpp as is':>16s}")
        for path in args.texts:
            text = open(path, encoding="utf-8").read()
            for n in args.ctx:
                got = prge_perplexity(args.prge, args.model, path, n, args.threads, "fp32")
                if got is None:
                    print(f"{os.path.relpath(path, ROOT):32s} {n:5d}   text too short for this context")
                    continue
                mine, chunks = got
                int8, c0 = prge_perplexity(args.prge, args.model, path, n, args.threads, "int8")
                exact, c1 = llama_perplexity(f32, text, n, exact=True)
                default, c2 = llama_perplexity(args.model, text, n, exact=False)
                assert chunks == c0 == c1 == c2, (chunks, c0, c1, c2)
                print(f"{os.path.relpath(path, ROOT):32s} {n:5d} {chunks:6d} {mine:10.4f} {exact:14.4f} {int8:10.4f} "
                      f"{default:16.4f}   (prge fp32 / llama.cpp f32 - 1 = {mine / exact - 1:+.1e})", flush=True)


if __name__ == "__main__":
    main()
