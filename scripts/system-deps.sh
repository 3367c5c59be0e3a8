#!/usr/bin/env bash
# System packages mdp uses when the machine can install them (Debian/Ubuntu, as root).
# - libopenblas0-pthread: an optimised BLAS that mdp loads under mlx-cpu (its wheel bundles the
#   reference BLAS, ~30x slower). Without it mdp still works, only slower; `mdp doctor` says so.
# - g++: builds mdp_kernels, the encoder's fused CPU kernels (scripts/build-kernels.sh); without a
#   compiler the encoder falls back to MLX ops.
# - tesseract-ocr, tesseract-ocr-eng: offline OCR of scanned PDF pages. Without them scanned
#   pages are quarantined with the install hint; `mdp doctor` says so. More languages:
#   tesseract-ocr-<lang> (e.g. tesseract-ocr-deu) and [parsing] languages in mdp.toml.
set -euo pipefail
want=()
[ -e /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 ] || [ -e /usr/lib/aarch64-linux-gnu/openblas-pthread/libblas.so.3 ] || want+=(libopenblas0-pthread)
command -v c++ >/dev/null || command -v g++ >/dev/null || want+=(g++)
command -v tesseract >/dev/null || want+=(tesseract-ocr)
dpkg -s tesseract-ocr-eng >/dev/null 2>&1 || [ -e /usr/share/tesseract-ocr/5/tessdata/eng.traineddata ] \
  || [ -e /usr/share/tesseract-ocr/4.00/tessdata/eng.traineddata ] || want+=(tesseract-ocr-eng)
for extra in "$@"; do
  dpkg -s "$extra" >/dev/null 2>&1 || want+=("$extra")
done
if [ ${#want[@]} -eq 0 ]; then exit 0; fi
if [ "$(uname -s)" != "Linux" ] || ! command -v apt-get >/dev/null; then
  echo "system-deps: not a Debian-like Linux; skipping ${want[*]} (see docs/installation.md)" >&2; exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo"; else
    echo "system-deps: need root to install ${want[*]}; run: sudo apt-get install -y ${want[*]}" >&2; exit 0
  fi
fi
echo "system-deps: installing ${want[*]}" >&2
$SUDO apt-get update -qq >/dev/null || true
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
