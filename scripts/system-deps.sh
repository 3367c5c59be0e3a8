#!/usr/bin/env bash
# System packages mdp uses when the machine can install them (Debian/Ubuntu, as root).
# - libopenblas0-pthread: an optimised BLAS that mdp loads under mlx-cpu (its wheel bundles the
#   reference BLAS, ~30x slower). Without it mdp still works, only slower; `mdp doctor` says so.
# - g++: builds mdp_kernels, the encoder's fused CPU kernels (scripts/build-kernels.sh); without a
#   compiler the encoder falls back to MLX ops.
set -euo pipefail
want=()
[ -e /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 ] || [ -e /usr/lib/aarch64-linux-gnu/openblas-pthread/libblas.so.3 ] || want+=(libopenblas0-pthread)
command -v c++ >/dev/null || command -v g++ >/dev/null || want+=(g++)
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
