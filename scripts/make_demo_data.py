#!/usr/bin/env python3
"""Makes the C demo's bundled personalization set (examples/data/) from the shared SST-2 data.

"The user's examples" are SST-2 movie-review snippets with their sentiment (0 = negative,
1 = positive). The selection is reproducible: a fixed seed, and every output line is copied
byte for byte from the source file, so each row can be traced back by its "idx".

  train.jsonl  500 rows of GLUE SST-2 train (250 per class), phrases of 5..30 words
               (the GLUE train set is phrase-level; one- or two-word fragments teach little)
  dev.jsonl    200 rows of ../shared/data/sst2/dev.jsonl (100 per class), whole sentences
               from the GLUE validation set, so they share no row with train.jsonl

Usage:
  python3 scripts/make_demo_data.py            # (re)write examples/data/*.jsonl
  python3 scripts/make_demo_data.py --check    # exit 1 if the files differ from a fresh build
"""
import hashlib
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT.parent / "shared" / "data" / "sst2"   # /work/shared/data/sst2 next to the repo
OUT = ROOT / "examples" / "data"
SEED = 0
N_TRAIN_PER_CLASS = 250
N_DEV_PER_CLASS = 100
MIN_WORDS, MAX_WORDS = 5, 30


def read_rows(path):
    """(raw line, parsed row) for every line of a JSONL file."""
    with open(path, "rb") as f:
        return [(line, json.loads(line)) for line in f if line.strip()]


def balanced_sample(rows, per_class, rng):
    """per_class rows of each label, drawn with rng, returned in source order (by idx)."""
    picked = []
    for label in (0, 1):
        pool = [r for r in rows if r[1]["label"] == label]
        if len(pool) < per_class:
            sys.exit(f"only {len(pool)} rows with label {label}, need {per_class}")
        picked += rng.sample(pool, per_class)
    return sorted(picked, key=lambda r: r[1]["idx"])


def build():
    """{file name: bytes} of the demo set."""
    train = [r for r in read_rows(SOURCE / "train.jsonl")
             if MIN_WORDS <= len(r[1]["sentence"].split()) <= MAX_WORDS]
    dev = read_rows(SOURCE / "dev.jsonl")
    return {
        "train.jsonl": b"".join(r[0] for r in balanced_sample(train, N_TRAIN_PER_CLASS, random.Random(SEED))),
        "dev.jsonl": b"".join(r[0] for r in balanced_sample(dev, N_DEV_PER_CLASS, random.Random(SEED + 1))),
    }


def main():
    check = sys.argv[1:] == ["--check"]
    if sys.argv[1:] and not check:
        sys.exit(__doc__)
    if check and not SOURCE.is_dir():
        print(f"SKIP {SOURCE} is not here: cannot check examples/data against it")
        return
    stale = False
    for name, data in build().items():
        path = OUT / name
        digest = hashlib.sha256(data).hexdigest()
        if check:
            ok = path.exists() and path.read_bytes() == data
            stale |= not ok
            print(f"{'ok   ' if ok else 'STALE'} {path.relative_to(ROOT)}")
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            rows = data.count(b"\n")
            print(f"{path.relative_to(ROOT)}: {rows} rows, {len(data)} bytes, sha256 {digest}")
    sys.exit(1 if stale else 0)


if __name__ == "__main__":
    main()
