# Diagnostic (a prototype, not product code): P-RGE plus one extra ± pair per step along the direct-path
# guess u (unit vector over all B's), in torch, forward passes only except the final norm's derivative.
# guided_prototype.py STEPS ETA ETA_U Q   (ETA: isotropic P-RGE part, q directions; ETA_U: the step along u)
import math, os, random, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import torch, torch.nn.functional as F
from torch_adapter import base, attach_fresh, sst2, sst2_unseen, logits2, evaluate
STEPS, ETA, ETA_U, Q = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
EPS = 1e-2
model, tok = base(int(os.environ.get("THREADS", "1")), eager=False)
slots = attach_fresh(model, 2, 15); mods = list(slots.values())   # the recipe's shape
train, dev, unseen = sst2("train"), sst2("dev"), sst2_unseen()
hs = {}
model.model.norm.register_forward_hook(lambda m, i, o: hs.__setitem__("h", i[0]))
ids = [tok(w, add_special_tokens=False).input_ids[0] for w in (" negative", " positive")]
def batch_loss(b, y):
    with torch.no_grad(): z, _ = logits2(model, tok, b); return F.cross_entropy(z, y).item()
def add(dirs, s):
    with torch.no_grad():
        for m, d in zip(mods, dirs): m.B += s * d
def guess(b, y):
    # base forward: activations at the last token, then d loss / d h_final through the final norm + 2 label rows
    with torch.no_grad(): _, last = logits2(model, tok, b)
    idx = torch.arange(len(y)); h = hs["h"][idx, last].clone().requires_grad_(True)  # [b, d_model]
    z = model.lm_head(model.model.norm(h))[:, ids]
    dh = torch.autograd.grad(F.cross_entropy(z, y), h)[0]                              # [b, d_model]
    out = []
    for (li, name), m in slots.items():
        ax = m.x[idx, last] @ m.A.T                                                        # [b, r]
        L = model.model.layers[li]
        if name in ("o_proj", "down_proj"): d = dh
        elif name in ("up_proj", "gate_proj"):
            gy = L.mlp.gate_proj.y[idx, last]; uy = L.mlp.up_proj.y[idx, last]
            back = dh @ L.mlp.down_proj.lin.weight
            d = back * F.silu(gy) if name == "up_proj" else back * uy * torch.sigmoid(gy) * (1 + gy * (1 - torch.sigmoid(gy)))
        else: out.append(torch.zeros_like(m.B)); continue
        out.append(m.scale * d.T @ ax)                                                       # [d_out, r]
    nrm = math.sqrt(sum((g ** 2).sum().item() for g in out)) or 1.0
    return [g / nrm for g in out]
t0 = time.time()
for step in range(1, STEPS + 1):
    b = random.sample(train, 16); y = torch.tensor([r["label"] for r in b])
    upd = [torch.zeros_like(m.B) for m in mods]
    for i in range(Q):
        xi = [torch.randn_like(m.B) for m in mods]
        add(xi, EPS); lp = batch_loss(b, y); add(xi, -2 * EPS); lm = batch_loss(b, y); add(xi, EPS)
        g = (lp - lm) / (2 * EPS)
        for u_, x_ in zip(upd, xi): u_ -= ETA / Q * g * x_
    if ETA_U > 0:
        u = guess(b, y)
        add(u, EPS); lp = batch_loss(b, y); add(u, -2 * EPS); lm = batch_loss(b, y); add(u, EPS)
        gu = (lp - lm) / (2 * EPS)
        for u_, d in zip(upd, u): u_ -= ETA_U * gu * d
    add(upd, 1.0)
    if step % int(os.environ.get("EVAL", "100")) == 0:
        print(step, round(time.time() - t0), "dev", evaluate(model, tok, dev), "unseen", evaluate(model, tok, unseen), flush=True)
