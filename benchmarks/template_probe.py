#!/usr/bin/env python3
"""How much an SST-2 prompt gives the adapter to work with, before any training.

For each prompt template: zero-shot dev accuracy for three pairs of label words (argmax, and
with the threshold at the median margin, i.e. calibrated), and a linear probe: logistic
regression on the final (post-norm) hidden state at the prompt's last token, fit on N random
train rows (seed 0), scored on all 500 dev rows. The probe bounds what a readout of the frozen
features can do; P-RGE on the top layers can move the features too.
Runs in the torch venv of vs_torch.sh (transformers dequantizes the GGUF to fp32):
    build/torch-venv/bin/python benchmarks/template_probe.py [N]     (default 3000; ~5 min a template)
"""
import json, os, random, sys
import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "sst2")
TEMPLATES = {"it_was": "{s} It was", "review_sentiment": "Review: {s}\nSentiment:",
             "chat": "<|im_start|>user\nIs this movie review positive or negative?\n{s}<|im_end|>\n"
                     "<|im_start|>assistant\nIt is"}
WORDS = [(" terrible", " great"), (" negative", " positive"), (" bad", " good")]


def rows(name):
    return [json.loads(l) for l in open(os.path.join(DATA, name))]


def features(model, tok, data, tpl):
    """[rows, d_model] final hidden states and [rows, vocab] next-token logits at the last token."""
    H, L = [], []
    with torch.no_grad():
        for r in data:
            ids = tok(tpl.format(s=r["sentence"].strip()), add_special_tokens=False, return_tensors="pt").input_ids
            out = model(ids, output_hidden_states=True)
            H.append(out.hidden_states[-1][0, -1].numpy())
            L.append(out.logits[0, -1].numpy())
    return np.array(H), np.array(L)


def probe(X, y, Xt, lam=1e-3, iters=300, lr=0.5):
    """Predictions of an L2-regularised logistic regression (full-batch gradient descent)."""
    mu, sd = X.mean(0), X.std(0) + 1e-6
    X, Xt = (X - mu) / sd, (Xt - mu) / sd
    w, b = np.zeros(X.shape[1]), 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(X @ w + b)))
        w -= lr * (X.T @ (p - y) / len(y) + lam * w)
        b -= lr * (p - y).mean()
    return (Xt @ w + b) > 0


def main():
    torch.set_num_threads(2)
    mdir = os.path.join(ROOT, "models")
    tok = AutoTokenizer.from_pretrained(mdir, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    model = AutoModelForCausalLM.from_pretrained(mdir, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
                                                 dtype=torch.float32).eval()
    random.seed(0)
    train = random.sample(rows("train.jsonl"), int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
    dev = rows("dev.jsonl")
    ytr, ydv = np.array([r["label"] for r in train]), np.array([r["label"] for r in dev])
    for name, tpl in TEMPLATES.items():
        Htr, _ = features(model, tok, train, tpl)
        Hdv, Ldv = features(model, tok, dev, tpl)
        zs = {}
        for neg, pos in WORDS:
            i, j = (tok(w, add_special_tokens=False).input_ids[0] for w in (neg, pos))
            z = Ldv[:, j] - Ldv[:, i]
            zs[pos.strip()] = [round(((z > 0) == ydv).mean(), 3), round(((z > np.median(z)) == ydv).mean(), 3)]
        acc = round((probe(Htr, ytr, Hdv) == ydv).mean(), 3)
        print(json.dumps({"template": name, "zero_shot_argmax_calibrated": zs, "probe_accuracy": acc}), flush=True)


if __name__ == "__main__":
    main()
