# Diagnostic: how much of the minibatch gradient w.r.t. LoRA-FA B lies along a "direct path" guess built from
# last-token activations only (the loss gradient at the final hidden state, written straight into o/down, and
# through W_down^T into up/gate). Usage: direct_path.py ADAPTER.gguf [THREADS]. Not a training method: see RECIPE (f).
import os, random, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import numpy as np, torch, torch.nn as nn
from torch_adapter import load, sst2, candidate_loss, KINDS
model, tok, slots = load(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1)
rows = sst2("train")
LASTD = {}
def loss(batch): return candidate_loss(model, tok, batch, LASTD)
# How much of the gradient w.r.t. B lies along a forward-computable "direct path" guess: the loss's
# gradient w.r.t. the final hidden state at the last token (through the final norm and the two label
# rows only), written straight into o/down outputs, and through W_down's transpose into up/gate.
hs = {}
def grab(mod, inp, out): hs["h"] = inp[0]
model.model.norm.register_forward_hook(grab)
import torch.nn.functional as F
stats = {}
for bi in range(8):
    batch = random.sample(rows, 16); l = loss(batch)
    allp = [m.B for m in slots.values()]
    g = torch.autograd.grad(l, allp, retain_graph=True)
    # d l / d h_final at the last tokens, through the norm and lm_head only (no layer below)
    h = hs["h"]; idx = torch.arange(16)
    LAST = LASTD['last']
    dh = torch.autograd.grad(l, h, retain_graph=True)[0][idx, LAST]      # [16, d_model]
    for ((L, nm), m), gt in zip(slots.items(), g):
        xl = m.x[idx, LAST]                                               # [16, d_in]
        ax = xl @ m.A.T                                                    # [16, r]
        if nm in ("o_proj", "down_proj"):
            d = dh
        elif nm in ("up_proj", "gate_proj"):
            mlp = model.model.layers[L].mlp
            gy = mlp.gate_proj.y[idx, LAST]; uy = mlp.up_proj.y[idx, LAST]
            back = dh @ mlp.down_proj.lin.weight                          # [16, d_ff]
            d = back * F.silu(gy) if nm == "up_proj" else back * uy * torch.sigmoid(gy) * (1 + gy * (1 - torch.sigmoid(gy)))
        else:
            continue
        guess = m.scale * d.T @ ax                                         # [d_out, r]
        cos = F.cosine_similarity(guess.reshape(-1), gt.reshape(-1), dim=0).item()
        stats.setdefault(nm, []).append(cos ** 2)
        stats.setdefault((L, nm), []).append(cos ** 2)
for k in ("o_proj", "down_proj", "up_proj", "gate_proj"):
    print(k, "mean cos^2 (share of |g_T|^2 along the guess)", round(sum(stats[k]) / len(stats[k]), 3))
for key in sorted(k for k in stats if isinstance(k, tuple)):
    print(key, round(sum(stats[key]) / len(stats[key]), 3))
