# Diagnostic: first-order training of the same LoRA-FA parametrization (B only) -> ceiling of the adapter.
import json, os, random, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import torch, torch.nn as nn
from torch_adapter import base, attach_fresh, sst2, sst2_unseen, candidate_loss, evaluate
R, LAYERS, LR, STEPS, OPT = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
model, tok = base(int(os.environ.get("THREADS", "2")), eager=False)
slots = attach_fresh(model, R, LAYERS); Bs = [m.B for m in slots.values()]
print("B params", sum(b.numel() for b in Bs), flush=True)
train, dev, unseen = sst2("train"), sst2("dev"), sst2_unseen()
opt = torch.optim.Adam(Bs, lr=LR) if OPT == "adam" else torch.optim.SGD(Bs, lr=LR)
t0 = time.time()
for step in range(1, STEPS + 1):
    b = random.sample(train, 16)
    loss = candidate_loss(model, tok, b)
    opt.zero_grad(); loss.backward(); opt.step()
    if step % 100 == 0:
        print(step, round(time.time()-t0), "dev", evaluate(model, tok, dev), "unseen", evaluate(model, tok, unseen), flush=True)

