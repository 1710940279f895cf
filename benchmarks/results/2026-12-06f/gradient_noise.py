# Diagnostic: how much of a minibatch gradient w.r.t. LoRA-FA B is signal. Per-example gradients of
# the candidate loss on 256 SST-2 train rows, at a trained adapter (argv[1]) and at B = 0: |mean|^2 against
# the mean |per-example|^2 (tr Σ = the difference). Usage: gradient_noise.py ADAPTER.gguf [THREADS]
import os, random, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import numpy as np, torch, torch.nn as nn
from torch_adapter import load, sst2, candidate_loss, KINDS
model, tok, slots = load(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1)
rows = sst2("train")
def loss(batch): return candidate_loss(model, tok, batch)
def measure(tag, n=256):
    batch = random.sample(rows, n); allp = [m.B for m in slots.values()]
    gs = []; ls = []
    for r in batch:
        l = loss([r]); ls.append(l.item())
        g = torch.autograd.grad(l, allp); gs.append(torch.cat([x.reshape(-1) for x in g]))
    Gm = torch.stack(gs)                      # [n, params]
    gbar = Gm.mean(0); g2 = (gbar ** 2).sum().item()
    e2 = (Gm ** 2).sum(1).mean().item()
    trS = e2 - g2
    print(tag, "mean loss", np.mean(ls), "|gbar|^2", g2, "mean|g_e|^2", e2, "trSigma/|g|^2", trS / g2,
          "per-example-z gain at b16", (16 * g2 + trS) / (g2 + trS), flush=True)
measure("trained")
for m in slots.values(): m.B.data.zero_()
measure("B=0")
