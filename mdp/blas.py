"""Make mlx-cpu run its matmuls on an optimised BLAS, in-process.

The ``mlx-cpu`` wheel links ``libmlx.so`` against a bundled *reference* netlib BLAS
(``mlx_cpu.libs/libblas-*.so``, about 4 GFLOP/s here). ``libmlx.so`` leaves ``cblas_sgemm``
and friends undefined and the dynamic linker resolves them when the library is loaded,
searching the process's *global* scope before the library's own dependencies. So loading
Debian's OpenBLAS with ``RTLD_GLOBAL`` **before** ``import mlx.core`` makes MLX bind to
OpenBLAS, with no ``LD_PRELOAD`` needed. Loading it after ``mlx.core`` has no effect (the
symbols are already bound); :func:`ensure_openblas_preloaded` re-executes the process with
``LD_PRELOAD`` for that case.

``MDP_BLAS=reference`` turns this off; ``MDP_BLAS_LIB=/path/libblas.so`` picks another library.
On macOS MLX uses Accelerate and nothing is done.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

_MULTIARCH = f"{platform.machine()}-linux-gnu"
OPENBLAS_DIRS: tuple[Path, ...] = (
    Path(f"/usr/lib/{_MULTIARCH}/openblas-pthread"),
    Path(f"/usr/lib/{_MULTIARCH}/openblas-openmp"),
    Path(f"/usr/lib/{_MULTIARCH}/openblas-serial"),
)
_REEXEC_GUARD = "MDP_BLAS_REEXEC"


@dataclass(frozen=True)
class BlasInfo:
    """Which BLAS MLX's CPU backend uses, and why."""

    name: str  # "openblas", "reference", "accelerate"
    library: str  # path of the library providing cblas_sgemm, "" when bundled/system
    active: bool  # True when an optimised BLAS was activated by this module (or preloaded)
    reason: str
    threads: int = 0  # BLAS threads when known, else 0
    config: str = ""  # OpenBLAS build string when known


_INFO: BlasInfo | None = None
_HANDLES: list[ctypes.CDLL] = []


def _find_openblas() -> Path | None:
    override = os.environ.get("MDP_BLAS_LIB")
    if override:
        return Path(override) if Path(override).exists() else None
    for folder in OPENBLAS_DIRS:
        candidate = folder / "libblas.so.3"
        if candidate.exists():
            return candidate
    return None


def _symbol_address(lib: ctypes.CDLL, name: str) -> int | None:
    try:
        return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
    except AttributeError:
        return None


def _openblas_details(lib: ctypes.CDLL) -> tuple[int, str]:
    threads, config = 0, ""
    try:
        lib.openblas_get_num_threads.restype = ctypes.c_int
        threads = int(lib.openblas_get_num_threads())
        lib.openblas_get_config.restype = ctypes.c_char_p
        config = (lib.openblas_get_config() or b"").decode(errors="replace")
    except AttributeError:
        pass
    return threads, config


def _preloaded_openblas() -> BlasInfo | None:
    """OpenBLAS already first in the global scope (e.g. LD_PRELOAD): MLX uses it."""
    global_scope = ctypes.CDLL(None)
    if _symbol_address(global_scope, "openblas_get_config") is None:
        return None
    threads, config = _openblas_details(global_scope)
    preload = os.environ.get("LD_PRELOAD", "")
    reason = "OpenBLAS was already loaded globally (LD_PRELOAD)"
    return BlasInfo("openblas", preload, True, reason, threads, config)


def activate_openblas() -> BlasInfo:
    """Bind mlx-cpu's BLAS calls to OpenBLAS if possible; idempotent and safe everywhere.

    Must run before the first ``import mlx.core`` to take effect. Never raises: the returned
    :class:`BlasInfo` says which BLAS is in use and why.
    """
    global _INFO
    if _INFO is not None:
        return _INFO
    _INFO = _activate()
    return _INFO


def _activate() -> BlasInfo:
    if sys.platform == "darwin":
        return BlasInfo("accelerate", "", False, "macOS: MLX uses Apple Accelerate")
    if not sys.platform.startswith("linux"):
        return BlasInfo("unknown", "", False, f"platform {sys.platform} not handled")
    if os.environ.get("MDP_BLAS", "").lower() in {"reference", "bundled", "off", "0"}:
        return BlasInfo("reference", "", False, "disabled by MDP_BLAS=reference (bundled netlib BLAS)")
    preloaded = _preloaded_openblas()
    if preloaded is not None:
        return preloaded
    if "mlx.core" in sys.modules:
        return BlasInfo(
            "reference",
            "",
            False,
            "mlx.core was imported before activate_openblas(); its BLAS is already bound to the bundled "
            "reference BLAS (import mdp.blas/mdp.encoder first, or call ensure_openblas_preloaded())",
        )
    lib_path = _find_openblas()
    if lib_path is None:
        return BlasInfo(
            "reference",
            "",
            False,
            "OpenBLAS not found: `apt-get install libopenblas0-pthread` (make setup does it); "
            "mlx-cpu falls back to its bundled reference BLAS (slow)",
        )
    try:
        blas = ctypes.CDLL(str(lib_path), mode=ctypes.RTLD_GLOBAL)
        _HANDLES.append(blas)
        lapack_path = lib_path.with_name("liblapack.so.3")
        if lapack_path.exists():
            _HANDLES.append(ctypes.CDLL(str(lapack_path), mode=ctypes.RTLD_GLOBAL))
    except OSError as exc:
        return BlasInfo("reference", "", False, f"could not load {lib_path}: {exc}")
    # libmlx.so resolves cblas_sgemm through the global scope first: check what that lookup finds.
    if _symbol_address(ctypes.CDLL(None), "cblas_sgemm") != _symbol_address(blas, "cblas_sgemm"):
        reason = f"{lib_path} loaded but does not win the symbol lookup"
        return BlasInfo("reference", str(lib_path), False, reason)
    threads, config = _openblas_details(blas)
    reason = "loaded with RTLD_GLOBAL before mlx.core"
    return BlasInfo("openblas", str(lib_path), True, reason, threads, config)


def ensure_openblas_preloaded() -> None:
    """Fallback: re-exec this process with ``LD_PRELOAD`` set to OpenBLAS (once; guarded by env).

    Only needed when ``mlx.core`` had to be imported before :func:`activate_openblas`. Does
    nothing on non-Linux, when disabled, when the library is missing or when already preloaded.
    """
    if not sys.platform.startswith("linux") or os.environ.get(_REEXEC_GUARD):
        return
    if os.environ.get("MDP_BLAS", "").lower() in {"reference", "bundled", "off", "0"}:
        return
    lib_path = _find_openblas()
    if lib_path is None or str(lib_path) in os.environ.get("LD_PRELOAD", ""):
        return
    env = dict(os.environ)
    env[_REEXEC_GUARD] = "1"
    env["LD_PRELOAD"] = ":".join(p for p in (str(lib_path), env.get("LD_PRELOAD", "")) if p)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def measure_matmul_gflops(m: int = 4096, k: int = 384, n: int = 1536, repeats: int = 3) -> float:
    """fp32 matmul rate of MLX on the default device, in GFLOP/s (best of ``repeats``)."""
    activate_openblas()
    import mlx.core as mx

    a = mx.random.normal((m, k), key=mx.random.key(0))
    b = mx.random.normal((k, n), key=mx.random.key(1))
    mx.eval(a, b)
    mx.eval(a @ b)  # warm-up (thread pool start, first-touch)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        mx.eval(a @ b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * m * k * n / best / 1e9


def blas_info(measure: bool = False) -> dict[str, str | float]:
    """Scalar description of the BLAS in use (for Dagster metadata); optionally its matmul rate."""
    info = activate_openblas()
    out: dict[str, str | float] = {
        "blas": info.name,
        "blas_library": info.library,
        "blas_reason": info.reason,
        "blas_threads": float(info.threads),
    }
    if measure:
        out["matmul_gflops"] = round(measure_matmul_gflops(), 1)
    return out


def as_dict(info: BlasInfo) -> dict[str, str | bool | int]:
    return asdict(info)
