#!/usr/bin/env bash
# Create .venv-clients: the third-party client libraries the client tier (tests/clients) drives
# against a live server (LangChain, LlamaIndex, litellm), kept apart from the service's .venv so
# their pins never touch the service's. Skipped when tests/clients/requirements.txt and this
# script are unchanged since the last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-clients
stamp="$venv/.setup-stamp"
fingerprint="$(cat tests/clients/requirements.txt scripts/clients-venv.sh | sha256sum | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$fingerprint" ]; then
    exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
# A full freeze: every package pinned, nothing resolved anew.
"$venv/bin/python" -m pip install -q --no-deps -r tests/clients/requirements.txt
"$venv/bin/python" -m pip check
echo "$fingerprint" > "$stamp"
