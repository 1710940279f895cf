# Diagnostic: the diagonal of the Hessian w.r.t. LoRA-FA B (Hutchinson, Rademacher probes) and the squared
# minibatch gradient G per entry, at a trained adapter: how concentrated tr(H) is, and what damping the
# stiffest entries or output channels would buy a ZO step. Usage: curvature_diagonal.py ADAPTER.gguf [THREADS]
import os, random, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import numpy as np, torch, torch.nn as nn
from torch_adapter import load, sst2, candidate_loss, KINDS
model, tok, slots = load(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1)
rows = sst2("train")
def loss(batch): return candidate_loss(model, tok, batch)
# Diagonal of H (Hutchinson, Rademacher probes) and squared gradient G per entry of B; is tr(H) held
# by few output channels, and how much of G sits in them? Ranked by one half of the probes, scored on the other.
NBATCH, NPROBE = 8, 4
allp = [m.B for m in slots.values()]; keys = list(slots.keys())
Dh = [[torch.zeros_like(p) for p in allp] for _ in range(2)]; G = [torch.zeros_like(p) for p in allp]
for bi in range(NBATCH):
    batch = random.sample(rows, 16); l = loss(batch)
    g = torch.autograd.grad(l, allp, create_graph=True)
    for p_, gg_ in zip(G, g): p_ += gg_.detach() ** 2 / NBATCH
    for pr in range(NPROBE):
        z = [torch.randint(0, 2, p.shape).float() * 2 - 1 for p in allp]
        hz = torch.autograd.grad(sum((a * b).sum() for a, b in zip(g, z)), allp, retain_graph=True)
        for d, zz, hh in zip(Dh[pr % 2], z, hz): d += zz * hh / (NBATCH * NPROBE / 2)
    print("batch", bi, flush=True)
def chan(ts): return torch.cat([t.sum(1) for t in ts])  # per output channel (sum over rank)
for level, f in (("entry", lambda ts: torch.cat([t.reshape(-1) for t in ts])), ("channel", chan)):
    a, b, gv = f(Dh[0]), f(Dh[1]), f(G)
    order = torch.argsort(a, descending=True); n = len(order)
    tb = b.sum().item(); tg = gv.sum().item()
    print(level, "n", n, "tr(H) half A", a.sum().item(), "half B", tb, "G", tg)
    for frac in (0.01, 0.05, 0.1, 0.2):
        top = order[: int(frac * n)]
        print(f"  top {frac:.0%} by half A: share of tr(H) (half B) {b[top].sum().item() / tb:.3f}, share of G {gv[top].sum().item() / tg:.3f}")
    # damping those entries to zero: ZO progress ratio sum(pG)/sum(pT) relative to p = 1
    for frac in (0.01, 0.05, 0.1, 0.2):
        top = order[: int(frac * n)]
        gain = ((tg - gv[top].sum().item()) / (tb - b[top].sum().item())) / (tg / tb)
        print(f"  drop top {frac:.0%}: progress gain {gain:.2f}")
