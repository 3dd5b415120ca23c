#!/usr/bin/env bash
# Create .venv and install prepshelf with pinned dependencies (CPU torch first, from a pin).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
python -m pip install -q -c constraints.txt torch==2.13.0
target="."
if [ -n "${1:-}" ]; then target=".[$1]"; fi
python -m pip install -q -c constraints.txt -e "$target"
