# Diagnostic: can a FIXED per-tensor step multiplier (what a_scale can express in ZO) make SGD learn like Adam?
# adam N: train N Adam steps (lr 1e-3), write per-(layer,kind) mean effective step lr/sqrt(v_hat) / lr_sgd.
# sgdp N ETA FILE MODE: SGD with per-tensor lr = ETA * mult (MODE kind: averaged over layers; tensor: per layer,kind).
import json, math, os, random, sys, time
import torch, torch.nn as nn
from transformers import AutoModelForCausalLM, AutoTokenizer
torch.set_num_threads(int(os.environ.get("THREADS", "1"))); torch.manual_seed(0); random.seed(0)
MODE = sys.argv[1]; STEPS = int(sys.argv[2])
R, LAYERS = 2, 15
mdir = "/work/main/models"; f = "SmolLM2-135M-Instruct.Q4_1.gguf"
tok = AutoTokenizer.from_pretrained(mdir, gguf_file=f)
model = AutoModelForCausalLM.from_pretrained(mdir, gguf_file=f, dtype=torch.float32).eval()
for p in model.parameters(): p.requires_grad_(False)
alpha = 8 * math.sqrt(R); scale = alpha / R
Bs = []; names = []
class LoRA(nn.Module):
    def __init__(self, lin):
        super().__init__(); self.lin = lin
        bound = 1 / math.sqrt(lin.in_features)
        self.A = torch.empty(R, lin.in_features).uniform_(-bound, bound)
        self.B = nn.Parameter(torch.zeros(lin.out_features, R)); Bs.append(self.B)
    def forward(self, x): return self.lin(x) + scale * (x @ self.A.T) @ self.B.T
n = len(model.model.layers)
for li, L in enumerate(model.model.layers[n - LAYERS:]):
    for mod, nms in ((L.self_attn, ["q_proj", "k_proj", "v_proj", "o_proj"]), (L.mlp, ["gate_proj", "up_proj", "down_proj"])):
        for nm in nms: setattr(mod, nm, LoRA(getattr(mod, nm))); names.append((n - LAYERS + li, nm))
ids = [tok(w, add_special_tokens=False).input_ids[0] for w in (" negative", " positive")]
rows = lambda p: [json.loads(l) for l in open(p)]
train = rows("/work/shared/data/sst2/train.jsonl"); dev = rows("/work/shared/data/sst2/dev.jsonl")
unseen = rows("/work/main/build/accuracy/sst2-unseen.jsonl")
train512 = random.Random(7).sample(train, 512)
tok.padding_side = "right"
if tok.pad_token is None: tok.pad_token = tok.eos_token
def logits2(batch):
    enc = tok([r["sentence"].strip() + " It was" for r in batch], add_special_tokens=False, return_tensors="pt", padding=True)
    out = model(**enc).logits; last = enc.attention_mask.sum(1) - 1
    return out[torch.arange(len(batch)), last][:, ids]
def evaluate(data):
    with torch.no_grad():
        c, l = 0, 0.0
        for i in range(0, len(data), 50):
            b = data[i:i+50]; z = logits2(b); y = torch.tensor([r["label"] for r in b])
            c += (z.argmax(1) == y).sum().item(); l += nn.functional.cross_entropy(z, y, reduction="sum").item()
        return round(c / len(data), 4), round(l / len(data), 4)
if MODE == "adam":
    opt = torch.optim.Adam(Bs, lr=1e-3)
else:
    ETA, FILE, PM = float(sys.argv[3]), sys.argv[4], sys.argv[5]
    mult = json.load(open(FILE))[PM]
    groups = [{"params": [b], "lr": ETA * mult[f"{L}.{nm}" if PM == "tensor" else nm]} for b, (L, nm) in zip(Bs, names)]
    opt = torch.optim.SGD(groups, lr=ETA)
t0 = time.time(); EV = int(os.environ.get("EVAL", "100"))
for step in range(1, STEPS + 1):
    b = random.sample(train, 16); y = torch.tensor([r["label"] for r in b])
    loss = nn.functional.cross_entropy(logits2(b), y)
    opt.zero_grad(); loss.backward(); opt.step()
    if step % EV == 0:
        print(step, round(time.time()-t0), "dev", evaluate(dev), "unseen", evaluate(unseen), "train512", evaluate(train512), flush=True)
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
