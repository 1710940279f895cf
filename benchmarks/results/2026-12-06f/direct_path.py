# Diagnostic: how much of the minibatch gradient w.r.t. LoRA-FA B lies along a "direct path" guess built from
# last-token activations only (the loss gradient at the final hidden state, written straight into o/down, and
# through W_down^T into up/gate). Usage: direct_path.py ADAPTER.gguf 0 THREADS. Not a training method: see RECIPE (f).
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
    def forward(self, x):
        y = self.lin(x) + self.scale * (x @ self.A.T) @ self.B.T
        self.x, self.y = x.detach(), y.detach(); return y
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
    global LAST, HL; LAST = last
    return nn.functional.cross_entropy(out[torch.arange(len(batch)), last][:, ids], torch.tensor([r["label"] for r in batch]))
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
