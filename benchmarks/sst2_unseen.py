#!/usr/bin/env python3
"""SST-2 sentences that are not in ../shared/data/sst2 at all: a fair stand-in for the 372
held-out rows of the GLUE SST-2 validation pool ("sentences you do not have").

GLUE's SST-2 dev set is the Stanford Sentiment Treebank's dev split without its neutral
sentences, and ../shared/data/sst5/dev.jsonl holds 500 sentences of that same split with the
five-way labels. Its non-neutral sentences that are neither in sst2/dev.jsonl nor in
sst2/train.jsonl (compared after collapsing whitespace) are SST-2 dev sentences this repository
does not otherwise have; their binary label is 1 for positive / very positive. The 199 that are
in sst2/dev.jsonl check the mapping (every label agrees).

    python3 benchmarks/sst2_unseen.py [OUT.jsonl]      default build/accuracy/sst2-unseen.jsonl

Evaluation only: never train, tune or select on it, or it stops measuring unseen sentences.
"""
import json, os, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("PRGE_DATA", os.path.join(os.path.dirname(ROOT), "shared", "data"))


def rows(task, split):
    with open(os.path.join(DATA, task, f"{split}.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def norm(s):
    return " ".join(s.split())


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "accuracy", "sst2-unseen.jsonl")
    dev = {norm(r["sentence"]): r["label"] for r in rows("sst2", "dev")}
    train = {norm(r["sentence"]) for r in rows("sst2", "train")}
    polar = [r for r in rows("sst5", "dev") if r["label"] != 2]
    shared = [r for r in polar if norm(r["sentence"]) in dev]
    wrong = [r for r in shared if dev[norm(r["sentence"])] != int(r["label"] > 2)]
    if not shared or wrong:
        sys.exit(f"sst5 dev does not map onto sst2 dev ({len(shared)} shared, {len(wrong)} disagree)")
    unseen = [r for r in polar if norm(r["sentence"]) not in dev and norm(r["sentence"]) not in train]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for r in unseen:
            f.write(json.dumps({"sentence": r["sentence"], "label": int(r["label"] > 2), "idx": r["idx"]}) + "\n")
    print(f"{out}: {len(unseen)} sentences ({sum(r['label'] > 2 for r in unseen)} positive); "
          f"{len(shared)} shared with sst2/dev.jsonl, labels agree", file=sys.stderr)


if __name__ == "__main__":
    main()
