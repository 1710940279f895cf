# Diagnostic: how much of a minibatch gradient w.r.t. LoRA-FA B is signal. Per-example gradients of
# the candidate loss on 256 SST-2 train rows, at a trained adapter (argv[1]) and at B = 0: |mean|^2 against
# the mean |per-example|^2 (tr Σ = the difference). Usage: gradient_noise.py ADAPTER.gguf [THREADS]
import json, math, random, sys
import numpy as np, torch, torch.nn as nn
from gguf import GGUFReader
from transformers import AutoModelForCausalLM, AutoTokenizer
torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1); torch.manual_seed(0); random.seed(0)
ADAPTER = sys.argv[1]
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
