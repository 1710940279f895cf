# Diagnostic: can a FIXED per-tensor step multiplier (what a_scale can express in ZO) make SGD learn like Adam?
# adam N: train N Adam steps (lr 1e-3), write per-(layer,kind) mean effective step lr/sqrt(v_hat) / lr_sgd.
# sgdp N ETA FILE MODE: SGD with per-tensor lr = ETA * mult (MODE kind: averaged over layers; tensor: per layer,kind).
import json, os, random, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import torch, torch.nn as nn
from torch_adapter import base, attach_fresh, sst2, sst2_unseen, candidate_loss, evaluate
MODE = sys.argv[1]; STEPS = int(sys.argv[2])
model, tok = base(int(os.environ.get("THREADS", "1")), eager=False)
slots = attach_fresh(model, 2, 15)                       # the recipe's shape: rank 2, top 15 layers
Bs = [m.B for m in slots.values()]; names = list(slots)
train, dev, unseen = sst2("train"), sst2("dev"), sst2_unseen()
train512 = random.Random(7).sample(train, 512)
if MODE == "adam":
    opt = torch.optim.Adam(Bs, lr=1e-3)
else:
    ETA, FILE, PM = float(sys.argv[3]), sys.argv[4], sys.argv[5]
    mult = json.load(open(FILE))[PM]
    groups = [{"params": [b], "lr": ETA * mult[f"{L}.{nm}" if PM == "tensor" else nm]} for b, (L, nm) in zip(Bs, names)]
    opt = torch.optim.SGD(groups, lr=ETA)
t0 = time.time(); EV = int(os.environ.get("EVAL", "100"))
for step in range(1, STEPS + 1):
    b = random.sample(train, 16)
    loss = candidate_loss(model, tok, b)
    opt.zero_grad(); loss.backward(); opt.step()
    if step % EV == 0:
        print(step, round(time.time()-t0), "dev", evaluate(model, tok, dev), "unseen", evaluate(model, tok, unseen), "train512", evaluate(model, tok, train512), flush=True)
if MODE == "adam":
    # Adam's per-coordinate step lr/(sqrt(v_hat)+eps), relative to SGD at 2e-2, averaged per tensor and per kind
    per = {}; kind = {}
    for b, (L, nm) in zip(Bs, names):
        st = opt.state[b]; vh = st["exp_avg_sq"] / (1 - 0.999 ** st["step"].item())
        eff = 1e-3 / (vh.mean().sqrt().item() + 1e-8) / 2e-2  # per-tensor RMS normalisation
        per[f"{L}.{nm}"] = eff; kind.setdefault(nm, []).append(eff)
    kind = {k: sum(v) / len(v) for k, v in kind.items()}
    json.dump({"tensor": per, "kind": kind}, open(os.environ.get("OUT", "adam_mult.json"), "w"), indent=1)
    print("kind multipliers", {k: round(v, 2) for k, v in kind.items()})
