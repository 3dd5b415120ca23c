#!/usr/bin/env bash
# Set up (first run only) and start prepshelf on this machine: embedded PostgreSQL + API + workers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec prepshelf serve "$@"
