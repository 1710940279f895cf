"""Shared by the comparison scripts: run `prge bench --json` and read the tokens it ran.

Every comparison runs prge in the same script run as the other tool, so the ratios compare
numbers taken under the same machine load (the box is a shared 2-core VM)."""
import json
import os
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "sst2", "train.jsonl")


def add_args(ap):
    ap.add_argument("--prge", default=os.path.join(ROOT, "build", "bin", "prge"), help="prge executable")
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--json-out", metavar="FILE", help="also write every raw result here")
    ap.add_argument("--max-wait", type=float, default=600, help="seconds to wait for an idle machine first")


def busy_fraction(seconds=3.0):
    """Fraction of all cores busy over `seconds` (from /proc/stat)."""
    def sample():
        with open("/proc/stat") as f:
            v = list(map(int, f.readline().split()[1:9]))
        return sum(v) - v[3] - v[4], sum(v)
    b0, t0 = sample()
    time.sleep(seconds)
    b1, t1 = sample()
    return (b1 - b0) / max(t1 - t0, 1)


def wait_idle(args, threshold=0.15):
    """Waits (up to --max-wait) until other processes use < 15% of the machine; says how long."""
    start = time.time()
    while (busy := busy_fraction()) >= threshold and time.time() - start < args.max_wait:
        pass
    print(f"machine {busy:.0%} busy after waiting {time.time() - start:.0f} s", flush=True)
    return busy


def run(args):
    """(the `prge bench --json` object, the token sets it ran: step / forward / long)."""
    wait_idle(args)
    with tempfile.TemporaryDirectory() as tmp:
        tokens = os.path.join(tmp, "tokens.json")
        cmd = [args.prge, "bench", "--json", "--model", args.model, "--data", args.data,
               "--threads", str(args.threads), "--steps", str(args.steps), "--tokens-out", tokens]
        print("$", " ".join(cmd), flush=True)
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        with open(tokens) as f:
            return json.loads(out), json.load(f)


def save(args, results):
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=1)


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def table(rows):
    """Left-aligned columns; rows are lists of strings."""
    width = [max(len(r[i]) for r in rows if len(r) > i) for i in range(max(map(len, rows)))]
    for r in rows:
        print("  ".join(c.ljust(width[i]) for i, c in enumerate(r)).rstrip())
