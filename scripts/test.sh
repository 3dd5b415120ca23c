#!/usr/bin/env bash
# Set up (first run only) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages: Chromium for the dashboard's browser tests (Playwright never downloads one),
# Tesseract and ffmpeg for scans and media.
bash scripts/system-deps.sh --test
bash scripts/setup.sh test
# The client tier's own venv (LangChain, LlamaIndex, litellm); skipped when unchanged.
bash scripts/clients-venv.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
python -m pytest "$@"
