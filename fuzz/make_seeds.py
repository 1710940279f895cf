#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/seeds/<target>/ from real files: the committed GGUF fixtures
and the tiny model / adapter that prge-fuzz writes with GGUFWriter (PRGE_FUZZ_SEEDS), the
tokenizer fixtures' test strings, the trainer configs of prge.h / the tests / the daemon's
example, the bundled data sets' first lines, and the daemon protocol tests' requests.
usage: fuzz/make_seeds.py [GENERATED_GGUF_DIR]   (run from the repository root)"""
import glob, json, os, shutil, struct, sys

root = os.getcwd()
shared = os.path.join(root, "..", "shared")
out = os.path.join(root, "fuzz", "seeds")
if os.path.isdir(out):
    shutil.rmtree(out)

def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

# ---- gguf: small real files only (libFuzzer's -max_len is 32 KiB)
gen = sys.argv[1] if len(sys.argv) > 1 else None
files = sorted(glob.glob("Tests/Fixtures/quant/*.gguf")) + (sorted(glob.glob(gen + "/*.gguf")) if gen else [])
for p in files:
    if os.path.getsize(p) <= 32768:
        put("gguf", os.path.basename(p), open(p, "rb").read())

# ---- tokenizer: byte 0 = (tokenizer index << 2) | parse_special << 1 | add_special
N_TOKENIZERS = 9   # reference, 7 pre-tokenizer variants, the SPM fixture (Fuzz.swift)
texts = []
for p in sorted(glob.glob("Tests/Fixtures/tokenizer/*.json")):
    for case in json.load(open(p)).get("encode", []):
        t = case.get("text")
        if not isinstance(t, str):
            continue
        if 0 < len(t.encode()) <= 200 and t not in texts:
            texts.append(t)
texts = texts[:40] + ["<|im_start|>user\nHi<|im_end|>", "caf\u00e9 \U0001F600 \u4e2d\u6587 3.14159"]
for i, t in enumerate(texts):
    sel = ((i % N_TOKENIZERS) << 2) | (i % 4)
    put("tokenizer", "text%02d" % i, bytes([sel]) + t.encode())

# ---- config: trainer configs as prge.h documents them, the C tests' and the daemon example's
configs = [
    '{}',
    '{"task": "sst2", "q": 2, "batch": 2, "lr": 0.05, "eps": 0.01, "seed": 3, "eval_every": 0, "loss": "full", "adapter": {"rank": 4, "layers": [28, 29]}}',
    '{"task": {"template": "{sentence} It was", "labels": [" terrible", " great"], "text_fields": ["sentence"], "label_field": "label"}, "estimator": "prge", "q": 4, "batch": 4, "eps": 0.01, "eval_every": 0, "seed": 0}',
    '{"task": "prompt_response", "estimator": "mezo", "schedule": "cosine", "steps": 100, "minutes": 1.5, "numeric_mode": "bf16", "threads": 2, "max_length": 64}',
    '{"task": "rte", "estimator": "rge", "loss": "candidates", "eval_limit": 16, "checkpoint": "c.gguf", "log": "l.jsonl", "step_log": "s.bin", "adapter": {"targets": ["q", "attn_v", "down"], "alpha": 16, "seed": 9, "layers": null}}',
    '{"model": "m.gguf", "train": "t.jsonl", "dev": "d.jsonl", "out": "o.gguf", "dev_split": 10, "task": {"template": "{a|capitalize} {b.c}", "labels": ["x", "y"], "label_values": ["p", 7], "name": "t"}}',
]
for i, c in enumerate(configs):
    put("config", "config%d.json" % i, c)
put("config", "daemon-example-trainer.json", json.dumps(json.load(open("packaging/prged.example.json"))["trainer"]))

# ---- jsonl: byte 0 = task index (Task.builtinNames order, then prompt_response, then the
# custom task of Fuzz.swift), byte 1 = max_length - 2; then the first lines of its data.
builtin = ["sst2", "mr", "cr", "sst5", "subj", "trec", "agnews", "rte", "cb", "boolq", "wic", "wsc", "multirc", "copa"]
for i, name in enumerate(builtin):
    for split in ("dev.jsonl", "train.jsonl"):
        p = os.path.join(shared, "data", name, split)
        if os.path.exists(p):
            lines = [l for l in open(p, "rb").read().split(b"\n")[:3] if len(l) < 1500]
            if lines:
                put("jsonl", name, bytes([i, 62]) + b"\n".join(lines) + b"\n")
                break
put("jsonl", "prompt_response", bytes([len(builtin), 14]) + b'{"prompt": "Say hi", "response": " hi"}\r\n\n{"prompt": "", "response": "x y z"}\n')
put("jsonl", "custom", bytes([len(builtin) + 1, 30]) + b'{"question": "is it?", "a": {"b": 3.5}, "c": "z", "l": "y"}\n{"question": "no", "a": {"b": "q"}, "c": 1, "l": 2}')

# ---- request: lines as the daemon's protocol tests send them
requests = [
    b'{"id": 1, "method": "status"}', b'{"id": "abc", "method": "nope"}', b'{"id": null, "method": "status", "params": {}}',
    b'{"id": 1, "method": "add_examples", "params": {"examples": [{"sentence": "a", "label": 1}], "split": "dev"}}',
    b'{"id": 1, "method": "classify", "params": {"prompt": "a", "labels": [" x", " y"]}}',
    b'{"id": 1, "method": "generate", "params": {"prompt": "Hello", "n_predict": 8}}\r',
    b'  {"id": 1, "method": "select_profile", "params": {"name": "work"}}  ', b'{"id": [1], "method": "status"}',
    b'{"id": 1, "method": "status", "extra": 1}', b'{"id": 1, "method": "status", "params": [1]}', b'{"id": 1, "method": "status"',
]
for i, r in enumerate(requests):
    put("request", "req%02d" % i, r)

# ---- daemon-config: the shipped example and a minimal one
put("daemon-config", "example.json", open("packaging/prged.example.json", "rb").read())
put("daemon-config", "minimal.json", b'{"socket": "/tmp/s", "state_dir": "/tmp/st", "model": "/m.gguf"}')
put("daemon-config", "uids.json", b'{"socket": "/tmp/s", "state_dir": "/tmp/st", "model": "/m.gguf", "allowed_uids": [0, 1000], "limits": {"max_request_bytes": 64}, "training": {"max_seconds": 0.5}, "log_level": "debug", "numeric_mode": "bf16"}')

for t in sorted(os.listdir(out)):
    print("%-14s %3d seeds" % (t, len(os.listdir(os.path.join(out, t)))))
