#!/usr/bin/env bash
# Debian packages prepshelf uses beyond PyPI: Tesseract + language data (OCR of scans and
# images) and ffmpeg (audio/video); with --test also Chromium for the dashboard's browser tests.
# Installs only what is missing and waits for another apt/dpkg run instead of failing on its lock.
# Without root or apt it only warns: the service still starts, and the features that need a
# missing tool fail their files with a message naming the package.
set -euo pipefail
want=(tesseract-ocr tesseract-ocr-eng tesseract-ocr-deu tesseract-ocr-fra tesseract-ocr-spa
      tesseract-ocr-osd ffmpeg)
# fonts-dejavu-core: the OCR tests render known text with a real TrueType font.
if [ "${1:-}" = "--test" ]; then want+=(chromium chromium-driver fonts-dejavu-core); fi
missing=()
for pkg in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
    echo "warning: missing Debian packages (install them as root): ${missing[*]}" >&2
    exit 0
fi
# For the service (no --test) apt failing (offline, no mirror) only warns, like a missing
# root: the service starts and the files that need a missing tool fail with that message.
# The tests need the tools, so there a failure stops the run.
strict=false; [ "${1:-}" = "--test" ] && strict=true
give_up() {
    echo "warning: could not install Debian packages ($1): ${missing[*]}" >&2
    if $strict; then exit 1; fi
    exit 0
}
apt_wait=(-o DPkg::Lock::Timeout=900)  # another apt holding the lock: wait, do not fail
tries=6; $strict || tries=1
for try in $(seq "$tries"); do
    apt-get "${apt_wait[@]}" update -qq && break
    [ "$try" = "$tries" ] && give_up "apt-get update failed"
    echo "apt-get update failed (lock held?); retrying in 20 s" >&2
    sleep 20
done
DEBIAN_FRONTEND=noninteractive apt-get "${apt_wait[@]}" install -y -qq "${missing[@]}" >/dev/null \
    || give_up "apt-get install failed"
