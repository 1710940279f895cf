# Diagnostic: per projection kind (top 15 layers), mean squared minibatch gradient G and Hessian
# trace T of the candidate loss w.r.t. LoRA-FA B, at B = 0 and at a trained adapter.
# ZO progress per step ∝ Σ p_k G_k / Σ p_k T_k for per-kind perturbation variance p_k.
import os, random, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import numpy as np, torch, torch.nn as nn
from torch_adapter import load, sst2, candidate_loss, KINDS
ADAPTER, NB = sys.argv[1], int(sys.argv[2])
model, tok, slots = load(ADAPTER, int(sys.argv[3]) if len(sys.argv) > 3 else 1)
kinds = list(KINDS)
rows = sst2("train")
def loss(batch): return candidate_loss(model, tok, batch)
def measure(tag):
    G = {k: 0.0 for k in kinds}; Tr = {k: 0.0 for k in kinds}; N = {k: 0 for k in kinds}
    for (L, nm), m in slots.items(): N[nm] += m.B.numel()
    for bi in range(NB):
        batch = random.sample(rows, 16)
        l = loss(batch)
        params = {k: [m.B for (L, nm), m in slots.items() if nm == k] for k in kinds}
        allp = [m.B for m in slots.values()]
        g = torch.autograd.grad(l, allp, create_graph=True)
        gi = dict(zip([id(p) for p in allp], g))
        for k in kinds:
            ps = params[k]
            if not ps: continue
            G[k] += sum((gi[id(p)] ** 2).sum().item() for p in ps) / NB
            z = [torch.randn_like(p) for p in ps]
            gz = sum((gi[id(p)] * zz).sum() for p, zz in zip(ps, z))
            hz = torch.autograd.grad(gz, ps, retain_graph=True)
            Tr[k] += sum((h * zz).sum().item() for h, zz in zip(hz, z)) / NB
    print(tag, "loss-batches", NB, flush=True)
    print(f"{'kind':>10} {'entries':>8} {'G':>10} {'T':>10} {'G/T':>10} {'h/entry':>10}")
    for k in kinds:
        if N[k]: print(f"{k:>10} {N[k]:8d} {G[k]:10.3e} {Tr[k]:10.3e} {G[k]/Tr[k] if Tr[k] else float('nan'):10.3e} {Tr[k]/N[k]:10.3e}", flush=True)
    return G, Tr, N
measure("trained")
for m in slots.values(): m.B.data.zero_()
measure("B=0")
