# The reference model in torch (fp32, dequantized from the GGUF) with a prge LoRA-FA adapter file's
# A and B attached, for the diagnostics under benchmarks/results/ (read-only; not product code).
# Each adapted projection remembers its last input and output (x, y) for diagnostics that need them.
import json, random, sys
import numpy as np, torch, torch.nn as nn
from gguf import GGUFReader
from transformers import AutoModelForCausalLM, AutoTokenizer

MODEL_DIR, MODEL_FILE = "/work/main/models", "SmolLM2-135M-Instruct.Q4_1.gguf"
KINDS = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
         "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}

class LoRA(nn.Module):
    def __init__(self, lin, A, B, scale):
        super().__init__(); self.lin = lin; self.A = torch.tensor(A); self.scale = scale
        self.B = nn.Parameter(torch.tensor(B))
    def forward(self, x):
        y = self.lin(x) + self.scale * (x @ self.A.T) @ self.B.T
        self.x, self.y = x.detach(), y.detach(); return y

def unperm(w, nh):  # llama.cpp's q/k row permutation, undone as transformers does for the weights
    d = w.shape[0] // nh // 2
    return w.reshape(nh, d, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)

def load(adapter, threads=1):
    """(model, tok, slots {(layer, kind): LoRA}) with the adapter's tensors attached."""
    torch.set_num_threads(threads); torch.manual_seed(0); random.seed(0)
    tok = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=MODEL_FILE)
    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR, gguf_file=MODEL_FILE, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    for p in model.parameters(): p.requires_grad_(False)
    rd = GGUFReader(adapter)
    alpha = float(rd.fields["adapter.lora.alpha"].parts[-1][0])
    T = {t.name: np.array(t.data) for t in rd.tensors}
    cfg, slots = model.config, {}
    for L, layer in enumerate(model.model.layers):
        for mod, names in ((layer.self_attn, ["q_proj", "k_proj", "v_proj", "o_proj"]), (layer.mlp, ["gate_proj", "up_proj", "down_proj"])):
            for nm in names:
                key = f"blk.{L}.{KINDS[nm]}.weight"
                if key + ".lora_a" not in T: continue
                A = T[key + ".lora_a"].reshape(-1, getattr(mod, nm).in_features)   # [r, d_in]
                B = T[key + ".lora_b"].reshape(getattr(mod, nm).out_features, -1)  # [d_out, r]
                if nm == "q_proj": B = unperm(B, cfg.num_attention_heads)
                if nm == "k_proj": B = unperm(B, cfg.num_key_value_heads)
                m = LoRA(getattr(mod, nm), A.astype(np.float32), B.astype(np.float32).copy(), alpha / A.shape[0])
                setattr(mod, nm, m); slots[(L, nm)] = m
    tok.padding_side = "right"
    if tok.pad_token is None: tok.pad_token = tok.eos_token
    return model, tok, slots

def sst2(split):
    return [json.loads(l) for l in open(f"/work/shared/data/sst2/{split}.jsonl")]

def candidate_loss(model, tok, batch, last_out=None):
    """SST-2 candidate loss (" negative" / " positive" after "<sentence> It was") of a batch of rows;
    last_out, a dict, receives the index of each prompt's last token."""
    ids = [tok(w, add_special_tokens=False).input_ids[0] for w in (" negative", " positive")]
    enc = tok([r["sentence"].strip() + " It was" for r in batch], add_special_tokens=False, return_tensors="pt", padding=True)
    out = model(**enc).logits; last = enc.attention_mask.sum(1) - 1
    if last_out is not None: last_out["last"] = last
    return nn.functional.cross_entropy(out[torch.arange(len(batch)), last][:, ids], torch.tensor([r["label"] for r in batch]))
