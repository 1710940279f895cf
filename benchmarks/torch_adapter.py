# The reference model in torch (fp32, dequantized from the GGUF) with a prge LoRA-FA adapter file's
# A and B attached, for the diagnostics under benchmarks/results/ (read-only; not product code).
# Each adapted projection remembers its last input and output (x, y) for diagnostics that need them.
import json, math, random, sys
import numpy as np, torch, torch.nn as nn
from gguf import GGUFReader
from transformers import AutoModelForCausalLM, AutoTokenizer

MODEL_DIR, MODEL_FILE = "/work/main/models", "SmolLM2-135M-Instruct.Q4_1.gguf"
KINDS = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
         "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}

class LoRA(nn.Module):
    def __init__(self, lin, A, B, scale):
        super().__init__(); self.lin = lin; self.A = torch.as_tensor(A); self.scale = scale
        self.B = nn.Parameter(torch.as_tensor(B))
    def forward(self, x):
        y = self.lin(x) + self.scale * (x @ self.A.T) @ self.B.T
        self.x, self.y = x.detach(), y.detach(); return y

def unperm(w, nh):  # llama.cpp's q/k row permutation, undone as transformers does for the weights
    d = w.shape[0] // nh // 2
    return w.reshape(nh, d, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)

def base(threads=1, eager=True):
    """(model, tok): the frozen reference model, seeds set to 0."""
    torch.set_num_threads(threads); torch.manual_seed(0); random.seed(0)
    tok = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=MODEL_FILE)
    kw = {"attn_implementation": "eager"} if eager else {}
    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR, gguf_file=MODEL_FILE, dtype=torch.float32, **kw).eval()
    for p in model.parameters(): p.requires_grad_(False)
    tok.padding_side = "right"
    if tok.pad_token is None: tok.pad_token = tok.eos_token
    return model, tok

def projections(model, layers):
    """(layer, kind, module holding it) for the seven projections of the given layers, in file order."""
    for L in layers:
        layer = model.model.layers[L]
        for mod, names in ((layer.self_attn, ["q_proj", "k_proj", "v_proj", "o_proj"]), (layer.mlp, ["gate_proj", "up_proj", "down_proj"])):
            for nm in names: yield L, nm, mod

def attach_fresh(model, rank, top):
    """LoRA-FA on all seven projections of the top `top` layers: A Kaiming-uniform, B = 0, α = 8·√r
    (the recipe's shape); returns slots {(layer, kind): LoRA}."""
    n, slots = len(model.model.layers), {}
    for L, nm, mod in projections(model, range(n - top, n)):
        lin = getattr(mod, nm); bound = 1 / math.sqrt(lin.in_features)
        A = torch.empty(rank, lin.in_features).uniform_(-bound, bound)            # [r, d_in]
        m = LoRA(lin, A, torch.zeros(lin.out_features, rank), 8 * math.sqrt(rank) / rank)
        setattr(mod, nm, m); slots[(L, nm)] = m
    return slots

def load(adapter, threads=1):
    """(model, tok, slots {(layer, kind): LoRA}) with the adapter's tensors attached."""
    model, tok = base(threads)
    rd = GGUFReader(adapter)
    alpha = float(rd.fields["adapter.lora.alpha"].parts[-1][0])
    T = {t.name: np.array(t.data) for t in rd.tensors}
    cfg, slots = model.config, {}
    for L, nm, mod in projections(model, range(len(model.model.layers))):
        key = f"blk.{L}.{KINDS[nm]}.weight"
        if key + ".lora_a" not in T: continue
        A = T[key + ".lora_a"].reshape(-1, getattr(mod, nm).in_features)   # [r, d_in]
        B = T[key + ".lora_b"].reshape(getattr(mod, nm).out_features, -1)  # [d_out, r]
        if nm == "q_proj": B = unperm(B, cfg.num_attention_heads)
        if nm == "k_proj": B = unperm(B, cfg.num_key_value_heads)
        m = LoRA(getattr(mod, nm), A.astype(np.float32), B.astype(np.float32).copy(), alpha / A.shape[0])
        setattr(mod, nm, m); slots[(L, nm)] = m
    return model, tok, slots

def sst2(split):
    return [json.loads(l) for l in open(f"/work/shared/data/sst2/{split}.jsonl")]

def sst2_unseen():
    return [json.loads(l) for l in open("/work/main/build/accuracy/sst2-unseen.jsonl")]  # benchmarks/sst2_unseen.py

def logits2(model, tok, batch):
    """([b, 2] logits of " negative" / " positive" after "<sentence> It was", [b] last-token index)."""
    ids = [tok(w, add_special_tokens=False).input_ids[0] for w in (" negative", " positive")]
    enc = tok([r["sentence"].strip() + " It was" for r in batch], add_special_tokens=False, return_tensors="pt", padding=True)
    out = model(**enc).logits; last = enc.attention_mask.sum(1) - 1
    return out[torch.arange(len(batch)), last][:, ids], last

def candidate_loss(model, tok, batch, last_out=None):
    """SST-2 candidate loss of a batch of rows; last_out, a dict, receives each prompt's last-token index."""
    z, last = logits2(model, tok, batch)
    if last_out is not None: last_out["last"] = last
    return nn.functional.cross_entropy(z, torch.tensor([r["label"] for r in batch]))

def evaluate(model, tok, data):
    """(accuracy, mean candidate loss) over data, 50 rows at a time."""
    with torch.no_grad():
        c, l = 0, 0.0
        for i in range(0, len(data), 50):
            b = data[i:i+50]; z, _ = logits2(model, tok, b); y = torch.tensor([r["label"] for r in b])
            c += (z.argmax(1) == y).sum().item(); l += nn.functional.cross_entropy(z, y, reduction="sum").item()
        return round(c / len(data), 4), round(l / len(data), 4)
