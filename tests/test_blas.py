"""OpenBLAS under mlx-cpu: activation is reported honestly and matmuls stay correct."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mdp.blas import OPENBLAS_DIRS, activate_openblas, blas_info

# Collected before modules that import MLX directly (test_decoder): bind OpenBLAS for the session.
activate_openblas()

_PROBE = """
import json
from mdp.blas import activate_openblas, blas_info
info = activate_openblas()
import mlx.core as mx, numpy as np
a = mx.random.normal((300, 200), key=mx.random.key(0))
b = mx.random.normal((200, 150), key=mx.random.key(1))
err = float(np.abs(np.array(a @ b) - np.array(a).astype(np.float64) @ np.array(b).astype(np.float64)).max())
report = {"name": info.name, "active": info.active, "reason": info.reason, "err": err}
print(json.dumps({**report, **blas_info()}))
"""


def _probe(**env: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, env={**os.environ, **env}, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _openblas_installed() -> bool:
    return any((folder / "libblas.so.3").exists() for folder in OPENBLAS_DIRS)


def test_in_process_matmul_matches_numpy() -> None:
    info = activate_openblas()
    assert activate_openblas() is info  # idempotent
    import mlx.core as mx

    rng = np.random.default_rng(0)
    a = rng.standard_normal((257, 384), dtype=np.float32)
    b = rng.standard_normal((384, 129), dtype=np.float32)
    np.testing.assert_allclose(np.array(mx.array(a) @ mx.array(b)), a @ b, rtol=1e-4, atol=1e-4)
    details = blas_info()
    assert details["blas"] == info.name and details["blas"]
    assert details["blas_reason"]


def test_fresh_process_uses_openblas() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("OpenBLAS activation is a Linux (mlx-cpu) matter; macOS uses Accelerate")
    if not _openblas_installed():
        pytest.skip("Debian's OpenBLAS is absent: `apt-get install libopenblas0-pthread` to test activation")
    report = _probe()
    assert report["name"] == "openblas" and report["active"], report["reason"]
    assert report["blas_library"].endswith("libblas.so.3")
    assert report["err"] < 1e-3


def test_disable_switch() -> None:
    report = _probe(MDP_BLAS="reference")
    assert report["name"] in {"reference", "accelerate"}
    assert not report["active"] or sys.platform == "darwin"
    assert report["err"] < 1e-3


def test_late_activation_is_reported() -> None:
    code = (
        "import json, mlx.core\nfrom mdp.blas import activate_openblas\n"
        "i = activate_openblas()\nprint(json.dumps([i.name, i.reason]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    name, reason = json.loads(result.stdout.strip().splitlines()[-1])
    if sys.platform.startswith("linux"):
        assert name == "reference" and "imported before" in reason
