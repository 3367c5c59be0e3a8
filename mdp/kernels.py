"""Which CPU kernels the encoder runs: mdp_kernels' fused C++ primitives, or MLX's own ops.

``mdp_kernels`` (the ``kernels/`` folder of the repo, built by ``make setup``) adds MLX primitives
with fused, vectorised CPU kernels: the attention core, exact GELU, residual add + layer norm and
the embedding lookup + layer norm (docs/encoder.md says why these). When the extension is missing,
built for another MLX version, or fails its self-test, the encoder falls back to the MLX-op kernels
of :mod:`mdp.models.bert` and :func:`kernel_info` says why. On Metal and CUDA MLX's ops always run.

``MDP_KERNELS`` picks: ``auto`` (default: the extension on the CPU when it works), ``mlx`` (never),
``mdp_kernels`` (required: an error when it cannot be used).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType

from mdp.blas import activate_openblas

activate_openblas()  # before the first `import mlx.core` (see mdp/blas.py)

import mlx.core as mx  # noqa: E402

CHOICES = ("auto", "mdp_kernels", "mlx")
FIX = "rebuild it with `make setup` (needs g++ from apt and cmake from PyPI; see docs/installation.md)"


@dataclass(frozen=True)
class KernelStatus:
    """The kernels an encoder uses and why."""

    name: str  # "mdp_kernels" or "mlx"
    reason: str
    isa: str = ""  # instruction set of the mdp_kernels build in use
    threads: int = 0  # threads the mdp_kernels kernels use
    fallback: bool = False  # True when mdp_kernels was wanted (auto, CPU) but could not be used

    def as_metadata(self) -> dict[str, str | int]:
        return {
            "kernels": self.name,
            "kernels_reason": self.reason,
            "kernels_isa": self.isa,
            "kernels_threads": self.threads,
        }


class KernelsUnavailable(RuntimeError):
    """MDP_KERNELS=mdp_kernels (or kernels="mdp_kernels") was asked for but cannot be used."""


def _self_test(ext: ModuleType) -> str:
    """Run each kernel once on a tiny input against MLX ops; '' when all agree, else what failed."""
    key = mx.random.key(7)
    x = mx.random.normal((2, 3, 8), key=key)
    weight, bias = mx.ones((8,)), mx.zeros((8,))
    checks = {
        "gelu": (ext.gelu(x), x * 0.5 * (1 + mx.erf(x / 2**0.5))),
        "add_layer_norm": (
            ext.add_layer_norm(x, x, weight, bias, 1e-5),
            mx.fast.layer_norm(x + x, weight, bias, 1e-5),
        ),
    }
    qkv = mx.random.normal((1, 3, 12), key=mx.random.key(8))
    q, k, v = qkv[..., :4], qkv[..., 4:8], qkv[..., 8:]
    weights = mx.softmax(q @ k.swapaxes(-1, -2), axis=-1)
    checks["attention"] = (ext.attention(qkv, mx.ones((1, 3)), 1), weights @ v)
    for name, (got, expected) in checks.items():
        if got.shape != expected.shape or not mx.allclose(got, expected, atol=1e-4).item():
            return f"self-test of {name} disagrees with MLX's ops"
    return ""


@lru_cache(maxsize=1)
def _load() -> tuple[ModuleType | None, str]:
    """The mdp_kernels extension if it can be used, else None and the reason (once per process)."""
    try:
        import mdp_kernels
    except ImportError as exc:
        return None, f"mdp_kernels is not installed ({exc}); {FIX}"
    except Exception as exc:  # a broken build must not break the encoder
        return None, f"mdp_kernels failed to load ({type(exc).__name__}: {exc}); {FIX}"
    if mdp_kernels.built_for_mlx != mx.__version__:
        built = mdp_kernels.built_for_mlx
        return None, f"mdp_kernels was built for mlx {built}, mlx {mx.__version__} is installed; {FIX}"
    try:
        with mx.stream(mx.cpu):
            problem = _self_test(mdp_kernels)
    except Exception as exc:
        problem = f"self-test raised {type(exc).__name__}: {exc}"
    if problem:
        return None, f"mdp_kernels {problem}; {FIX}"
    return mdp_kernels, "fused C++ CPU kernels (mdp_kernels)"


def resolve(
    choice: str | None = None, device: mx.Device | None = None
) -> tuple[ModuleType | None, KernelStatus]:
    """The kernel module to use (None: MLX ops) and its status, for ``choice`` on ``device``.

    ``choice`` defaults to ``MDP_KERNELS`` or ``auto``; ``device`` to MLX's default device.
    """
    choice = (choice or os.environ.get("MDP_KERNELS") or "auto").strip().lower()
    if choice not in CHOICES:
        raise ValueError(f"kernels {choice!r} unknown; use one of {', '.join(CHOICES)} (MDP_KERNELS)")
    device = device or mx.default_device()
    if choice == "mlx":
        return None, KernelStatus("mlx", "MLX ops (asked for: kernels='mlx' / MDP_KERNELS=mlx)")
    if device != mx.cpu:
        if choice == "mdp_kernels":
            raise KernelsUnavailable(f"mdp_kernels has CPU kernels only; the device is {device}")
        return None, KernelStatus("mlx", f"MLX ops: {device} is not the CPU (mdp_kernels are CPU kernels)")
    ext, reason = _load()
    if ext is None:
        if choice == "mdp_kernels":
            raise KernelsUnavailable(reason)
        return None, KernelStatus("mlx", f"MLX ops (fallback): {reason}", fallback=True)
    return ext, KernelStatus("mdp_kernels", reason, str(ext.isa()), int(ext.threads()))


def kernel_info() -> dict[str, str | int]:
    """Scalars for ``mdp doctor`` and Dagster metadata: what the encoder would use on this device."""
    _, status = resolve()
    return status.as_metadata()
