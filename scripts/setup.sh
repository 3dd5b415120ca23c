#!/usr/bin/env bash
# Create .venv and install prepshelf with pinned dependencies (CPU torch first, from a pin).
# Skipped when pyproject.toml, constraints.txt and the extra asked for are unchanged since the
# last successful run (the source itself is an editable install and needs no reinstall).
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
stamp=".venv/.setup-stamp${extra:+-$extra}"
fingerprint="$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$fingerprint" ]; then
    exit 0
fi
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
python -m pip install -q -c constraints.txt torch==2.13.0
target="."
if [ -n "$extra" ]; then target=".[$extra]"; fi
python -m pip install -q -c constraints.txt -e "$target"
echo "$fingerprint" > "$stamp"
