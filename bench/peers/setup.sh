#!/usr/bin/env bash
# Create .venv-peers (separate from the project's .venv) with LangChain and LlamaIndex for
# bench/peers/run_peers.py. CPU torch first, from the project's pin, and the same constraints
# file on every install so no peer can pull a CUDA torch.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.venv-peers
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -c constraints.txt torch==2.13.0
"$venv/bin/python" -m pip install -q -c constraints.txt -r bench/peers/requirements.txt
"$venv/bin/python" -m pip check
