# Diagnostic: the diagonal of the Hessian w.r.t. LoRA-FA B (Hutchinson, Rademacher probes) and the squared
# minibatch gradient G per entry, at a trained adapter: how concentrated tr(H) is, and what damping the
# stiffest entries or output channels would buy a ZO step. Usage: curvature_diagonal.py ADAPTER.gguf 0 THREADS
import json, math, random, sys
import numpy as np, torch, torch.nn as nn
from gguf import GGUFReader
from transformers import AutoModelForCausalLM, AutoTokenizer
torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 1); torch.manual_seed(0); random.seed(0)
ADAPTER, NB = sys.argv[1], int(sys.argv[2])
mdir = "/work/main/models"; f = "SmolLM2-135M-Instruct.Q4_1.gguf"
tok = AutoTokenizer.from_pretrained(mdir, gguf_file=f)
model = AutoModelForCausalLM.from_pretrained(mdir, gguf_file=f, dtype=torch.float32, attn_implementation="eager").eval()
for p in model.parameters(): p.requires_grad_(False)
rd = GGUFReader(ADAPTER)
alpha = float(rd.fields["adapter.lora.alpha"].parts[-1][0])
T = {t.name: np.array(t.data) for t in rd.tensors}
gg = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
      "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
def unperm(w, nh):  # llama.cpp's q/k row permutation, undone as transformers does for the weights
    d = w.shape[0] // nh // 2
    return w.reshape(nh, d, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)
cfg = model.config
slots = {}
class LoRA(nn.Module):
    def __init__(self, lin, A, B, scale):
        super().__init__(); self.lin = lin; self.A = torch.tensor(A); self.scale = scale
        self.B = nn.Parameter(torch.tensor(B))
    def forward(self, x): return self.lin(x) + self.scale * (x @ self.A.T) @ self.B.T
for L, layer in enumerate(model.model.layers):
    for mod, names in ((layer.self_attn, ["q_proj", "k_proj", "v_proj", "o_proj"]), (layer.mlp, ["gate_proj", "up_proj", "down_proj"])):
        for nm in names:
            key = f"blk.{L}.{gg[nm]}.weight"
            if key + ".lora_a" not in T: continue
            A = T[key + ".lora_a"].reshape(-1, getattr(mod, nm).in_features)   # [r, d_in]
            B = T[key + ".lora_b"].reshape(getattr(mod, nm).out_features, -1)  # [d_out, r]
            if nm == "q_proj": B = unperm(B, cfg.num_attention_heads)
            if nm == "k_proj": B = unperm(B, cfg.num_key_value_heads)
            r = A.shape[0]
            m = LoRA(getattr(mod, nm), A.astype(np.float32), B.astype(np.float32).copy(), alpha / r)
            setattr(mod, nm, m); slots[(L, nm)] = m
kinds = list(gg)
ids = [tok(w, add_special_tokens=False).input_ids[0] for w in (" negative", " positive")]
rows = [json.loads(l) for l in open("/work/shared/data/sst2/train.jsonl")]
dev = [json.loads(l) for l in open("/work/shared/data/sst2/dev.jsonl")]
tok.padding_side = "right"
if tok.pad_token is None: tok.pad_token = tok.eos_token
def loss(batch):
    enc = tok([r["sentence"].strip() + " It was" for r in batch], add_special_tokens=False, return_tensors="pt", padding=True)
    out = model(**enc).logits; last = enc.attention_mask.sum(1) - 1
    return nn.functional.cross_entropy(out[torch.arange(len(batch)), last][:, ids], torch.tensor([r["label"] for r in batch]))
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
