# Diagnostic (a prototype, not product code): P-RGE plus one extra ± pair per step along the direct-path
# guess u (unit vector over all B's), in torch, forward passes only except the final norm's derivative.
# guided_prototype.py STEPS ETA ETA_U Q   (ETA: isotropic P-RGE part, q directions; ETA_U: the step along u)
import json, math, os, random, sys, time
import torch, torch.nn as nn, torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer
torch.set_num_threads(int(os.environ.get("THREADS", "1"))); torch.manual_seed(0); random.seed(0)
STEPS, ETA, ETA_U, Q = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
EPS, R, LAYERS = 1e-2, 2, 15
mdir = "/work/main/models"; f = "SmolLM2-135M-Instruct.Q4_1.gguf"
tok = AutoTokenizer.from_pretrained(mdir, gguf_file=f)
model = AutoModelForCausalLM.from_pretrained(mdir, gguf_file=f, dtype=torch.float32).eval()
for p in model.parameters(): p.requires_grad_(False)
alpha = 8 * math.sqrt(R); scale = alpha / R
mods = []
class LoRA(nn.Module):
    def __init__(self, lin, name):
        super().__init__(); self.lin = lin; self.name = name
        bound = 1 / math.sqrt(lin.in_features)
        self.A = torch.empty(R, lin.in_features).uniform_(-bound, bound)
        self.B = torch.zeros(lin.out_features, R); mods.append(self)
    def forward(self, x):
        y = self.lin(x) + scale * (x @ self.A.T) @ self.B.T
        self.x, self.y = x, y; return y
n = len(model.model.layers)
for L in model.model.layers[n - LAYERS:]:
    for mod, nms in ((L.self_attn, ["q_proj", "k_proj", "v_proj", "o_proj"]), (L.mlp, ["gate_proj", "up_proj", "down_proj"])):
        for nm in nms: setattr(mod, nm, LoRA(getattr(mod, nm), nm))
ids = [tok(w, add_special_tokens=False).input_ids[0] for w in (" negative", " positive")]
rows = lambda p: [json.loads(l) for l in open(p)]
train = rows("/work/shared/data/sst2/train.jsonl"); dev = rows("/work/shared/data/sst2/dev.jsonl")
unseen = rows("/work/main/build/accuracy/sst2-unseen.jsonl")
tok.padding_side = "right"
if tok.pad_token is None: tok.pad_token = tok.eos_token
hs = {}
model.model.norm.register_forward_hook(lambda m, i, o: hs.__setitem__("h", i[0]))
def enc(batch): return tok([r["sentence"].strip() + " It was" for r in batch], add_special_tokens=False, return_tensors="pt", padding=True)
def logits2(e):
    out = model(**e).logits; last = e.attention_mask.sum(1) - 1
    return out[torch.arange(out.shape[0]), last][:, ids], last
def evaluate(data):
    with torch.no_grad():
        c, l = 0, 0.0
        for i in range(0, len(data), 50):
            b = data[i:i+50]; z, _ = logits2(enc(b)); y = torch.tensor([r["label"] for r in b])
            c += (z.argmax(1) == y).sum().item(); l += F.cross_entropy(z, y, reduction="sum").item()
        return round(c / len(data), 4), round(l / len(data), 4)
def batch_loss(e, y):
    with torch.no_grad(): z, _ = logits2(e); return F.cross_entropy(z, y).item()
def add(dirs, s):
    for m, d in zip(mods, dirs): m.B += s * d
def guess(e, y):
    # base forward: activations at the last token, then d loss / d h_final through the final norm + 2 label rows
    with torch.no_grad(): _, last = logits2(e)
    idx = torch.arange(len(y)); h = hs["h"][idx, last].clone().requires_grad_(True)  # [b, d_model]
    z = model.lm_head(model.model.norm(h))[:, ids]
    dh = torch.autograd.grad(F.cross_entropy(z, y), h)[0]                              # [b, d_model]
    out = []
    for m in mods:
        ax = m.x[idx, last] @ m.A.T                                                        # [b, r]
        L = model.model.layers[[i for i, l in enumerate(model.model.layers) if m in l.modules()][0]]
        if m.name in ("o_proj", "down_proj"): d = dh
        elif m.name in ("up_proj", "gate_proj"):
            gy = L.mlp.gate_proj.y[idx, last]; uy = L.mlp.up_proj.y[idx, last]
            back = dh @ L.mlp.down_proj.lin.weight
            d = back * F.silu(gy) if m.name == "up_proj" else back * uy * torch.sigmoid(gy) * (1 + gy * (1 - torch.sigmoid(gy)))
        else: out.append(torch.zeros_like(m.B)); continue
        out.append(scale * d.T @ ax)                                                       # [d_out, r]
    nrm = math.sqrt(sum((g ** 2).sum().item() for g in out)) or 1.0
    return [g / nrm for g in out]
t0 = time.time()
for step in range(1, STEPS + 1):
    b = random.sample(train, 16); y = torch.tensor([r["label"] for r in b]); e = enc(b)
    upd = [torch.zeros_like(m.B) for m in mods]
    for i in range(Q):
        xi = [torch.randn_like(m.B) for m in mods]
        add(xi, EPS); lp = batch_loss(e, y); add(xi, -2 * EPS); lm = batch_loss(e, y); add(xi, EPS)
        g = (lp - lm) / (2 * EPS)
        for u_, x_ in zip(upd, xi): u_ -= ETA / Q * g * x_
    if ETA_U > 0:
        u = guess(e, y)
        add(u, EPS); lp = batch_loss(e, y); add(u, -2 * EPS); lm = batch_loss(e, y); add(u, EPS)
        gu = (lp - lm) / (2 * EPS)
        for u_, d in zip(upd, u): u_ -= ETA_U * gu * d
    add(upd, 1.0)
    if step % int(os.environ.get("EVAL", "100")) == 0:
        print(step, round(time.time() - t0), "dev", evaluate(dev), "unseen", evaluate(unseen), flush=True)
