# Diagnostic: per-(layer, projection) squared gradient of the candidate loss w.r.t. B at B = 0
# (LoRA-FA, rank R, A kaiming), averaged over batches of train rows: signal per B entry.
import json, math, random, sys
import torch, torch.nn as nn
from transformers import AutoModelForCausalLM, AutoTokenizer
torch.set_num_threads(2); torch.manual_seed(0); random.seed(1)
R = 2; NB = int(sys.argv[1]) if len(sys.argv) > 1 else 8
mdir = "/work/main/models"; f = "SmolLM2-135M-Instruct.Q4_1.gguf"
tok = AutoTokenizer.from_pretrained(mdir, gguf_file=f)
model = AutoModelForCausalLM.from_pretrained(mdir, gguf_file=f, dtype=torch.float32).eval()
for p in model.parameters(): p.requires_grad_(False)
scale = 8 * math.sqrt(R) / R
mods = {}
class LoRA(nn.Module):
    def __init__(self, lin):
        super().__init__(); self.lin = lin
        bound = 1 / math.sqrt(lin.in_features)
        self.A = torch.empty(R, lin.in_features).uniform_(-bound, bound)
        self.B = nn.Parameter(torch.zeros(lin.out_features, R))
    def forward(self, x): return self.lin(x) + scale * (x @ self.A.T) @ self.B.T
P = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
for li, L in enumerate(model.model.layers):
    for nm in P:
        mod = L.self_attn if nm[0] in "qkvo" else L.mlp
        setattr(mod, nm, LoRA(getattr(mod, nm))); mods[(li, nm)] = getattr(mod, nm)
ids = [tok(w, add_special_tokens=False).input_ids[0] for w in (" negative", " positive")]
train = [json.loads(l) for l in open("/work/shared/data/sst2/train.jsonl")]
tok.padding_side = "right"; tok.pad_token = tok.pad_token or tok.eos_token
acc = {k: 0.0 for k in mods}
for _ in range(NB):
    b = random.sample(train, 16); y = torch.tensor([r["label"] for r in b])
    enc = tok([r["sentence"].strip() + " It was" for r in b], add_special_tokens=False, return_tensors="pt", padding=True)
    z = model(**enc).logits[torch.arange(16), enc.attention_mask.sum(1) - 1][:, ids]
    loss = nn.functional.cross_entropy(z, y)
    for m in mods.values(): m.B.grad = None
    loss.backward()
    for k, m in mods.items(): acc[k] += (m.B.grad ** 2).sum().item() / NB
out = {f"{li}.{nm}": [acc[(li, nm)], mods[(li, nm)].B.numel()] for (li, nm) in mods}
json.dump(out, open("/tmp/ho/graddens.json", "w"))
print("per projection (sum over layers): grad^2, entries, density")
for nm in P:
    g = sum(acc[(li, nm)] for li in range(30)); n = sum(mods[(li, nm)].B.numel() for li in range(30))
    print(nm, f"{g:.3e}", n, f"{g/n:.3e}")
print("per layer: grad^2, density")
for li in range(30):
    g = sum(acc[(li, nm)] for nm in P); n = sum(mods[(li, nm)].B.numel() for nm in P)
    print(li, f"{g:.3e}", f"{g/n:.3e}")
