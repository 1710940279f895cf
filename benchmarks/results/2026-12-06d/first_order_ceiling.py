# Diagnostic: first-order training of the same LoRA-FA parametrization (B only) -> ceiling of the adapter.
import json, math, os, random, sys, time
import torch, torch.nn as nn
from transformers import AutoModelForCausalLM, AutoTokenizer
torch.set_num_threads(int(os.environ.get("THREADS", "2"))); torch.manual_seed(0); random.seed(0)
R, LAYERS, LR, STEPS, OPT = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
mdir = "/work/main/models"; f = "SmolLM2-135M-Instruct.Q4_1.gguf"
tok = AutoTokenizer.from_pretrained(mdir, gguf_file=f)
model = AutoModelForCausalLM.from_pretrained(mdir, gguf_file=f, dtype=torch.float32).eval()
for p in model.parameters(): p.requires_grad_(False)
alpha = 8 * math.sqrt(R); scale = alpha / R
Bs = []
class LoRA(nn.Module):
    def __init__(self, lin):
        super().__init__(); self.lin = lin
        bound = 1 / math.sqrt(lin.in_features)  # kaiming-uniform(a=sqrt5) bound
        self.A = torch.empty(R, lin.in_features).uniform_(-bound, bound)
        self.B = nn.Parameter(torch.zeros(lin.out_features, R)); Bs.append(self.B)
    def forward(self, x): return self.lin(x) + scale * (x @ self.A.T) @ self.B.T
n = len(model.model.layers)
for L in model.model.layers[n - LAYERS:]:
    for mod, names in ((L.self_attn, ["q_proj", "k_proj", "v_proj", "o_proj"]), (L.mlp, ["gate_proj", "up_proj", "down_proj"])):
        for nm in names: setattr(mod, nm, LoRA(getattr(mod, nm)))
print("B params", sum(b.numel() for b in Bs), flush=True)
ids = [tok(w, add_special_tokens=False).input_ids[0] for w in (" negative", " positive")]
rows = lambda p: [json.loads(l) for l in open(p)]
train = rows("/work/shared/data/sst2/train.jsonl"); dev = rows("/work/shared/data/sst2/dev.jsonl")
unseen = rows("/work/main/build/accuracy/sst2-unseen.jsonl")  # benchmarks/sst2_unseen.py
tok.padding_side = "right"
if tok.pad_token is None: tok.pad_token = tok.eos_token
def logits2(batch):
    enc = tok([r["sentence"].strip() + " It was" for r in batch], add_special_tokens=False, return_tensors="pt", padding=True)
    out = model(**enc).logits
    last = enc.attention_mask.sum(1) - 1
    return out[torch.arange(len(batch)), last][:, ids]
def evaluate(data):
    with torch.no_grad():
        c, l = 0, 0.0
        for i in range(0, len(data), 50):
            b = data[i:i+50]; z = logits2(b); y = torch.tensor([r["label"] for r in b])
            c += (z.argmax(1) == y).sum().item(); l += nn.functional.cross_entropy(z, y, reduction="sum").item()
        return c / len(data), l / len(data)
opt = torch.optim.Adam(Bs, lr=LR) if OPT == "adam" else torch.optim.SGD(Bs, lr=LR)
t0 = time.time()
for step in range(1, STEPS + 1):
    b = random.sample(train, 16); y = torch.tensor([r["label"] for r in b])
    loss = nn.functional.cross_entropy(logits2(b), y)
    opt.zero_grad(); loss.backward(); opt.step()
    if step % 100 == 0:
        print(step, round(time.time()-t0), "dev", evaluate(dev), "unseen", evaluate(unseen), flush=True)

