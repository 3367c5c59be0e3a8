#!/usr/bin/env bash
# Build mdp_kernels (kernels/: fused C++ CPU kernels for the encoder) against the MLX installed in
# the venv, on this machine. Never fails `make setup`: without the extension the encoder uses MLX
# ops (slower on the CPU), and `mdp doctor` says which kernels are in use and why.
set -uo pipefail
PY="${1:-.venv/bin/python}"
cd "$(dirname "$0")/.."
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
fallback() {
  echo "kernels: $1" >&2
  echo "kernels: the encoder falls back to MLX ops on the CPU (slower); \`mdp doctor\` reports it." >&2
  # A build for another MLX version must not stay behind (mdp would refuse it anyway).
  "$PY" -m pip uninstall -y -q mdp-kernels >/dev/null 2>&1 || true
  exit 0
}
if [ "${MDP_KERNELS:-}" = "mlx" ]; then
  echo "kernels: MDP_KERNELS=mlx, not building mdp_kernels" >&2
  exit 0
fi
if ! command -v c++ >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1; then
  fallback "no C++ compiler; install one (Debian: sudo apt-get install g++; macOS: xcode-select --install)"
fi
# Build requirements come from kernels/pyproject.toml (one place for their pins); the build runs
# without isolation so that CMake finds the venv's own MLX (headers, CMake config, libmlx).
# (Word splitting on purpose: the requirement strings have no spaces; no mapfile, for macOS's bash 3.)
requires="$("$PY" -c "import tomllib; print(' '.join(tomllib.load(open('kernels/pyproject.toml', 'rb'))['build-system']['requires']))")"
# shellcheck disable=SC2086
if [ -z "$requires" ] || ! "$PY" -m pip install -q $requires >"$log" 2>&1; then
  tail -5 "$log" >&2
  fallback "could not install the build requirements (${requires:-unreadable kernels/pyproject.toml})"
fi
echo "kernels: building mdp_kernels against mlx $("$PY" -c 'import mlx.core as mx; print(mx.__version__)') ..." >&2
if ! "$PY" -m pip install -q --no-build-isolation --force-reinstall --no-deps ./kernels >"$log" 2>&1; then
  grep -E "error|Error" "$log" | head -15 >&2
  fallback "the build failed (see the errors above)"
fi
if ! status="$("$PY" -c 'from mdp.kernels import kernel_info; i = kernel_info(); print(i["kernels"], "-", i["kernels_isa"] or i["kernels_reason"])' 2>&1)"; then
  echo "$status" | tail -3 >&2
  fallback "mdp_kernels was built but does not load"
fi
echo "kernels: $status" >&2
