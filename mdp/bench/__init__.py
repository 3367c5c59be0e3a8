"""Benchmarks: speed is measured here, never asserted in tests.

Every section compares mdp against a baseline run in the same process on the
same data and reports the ratio. ``mdp bench`` (or ``make bench``) runs them,
writes ``benchmarks/results.json`` and ``benchmarks/RESULTS.md``; the
``embeddings`` asset copies the latest embed numbers into its metadata.
"""

from __future__ import annotations

import json
import platform
import time
import traceback
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any

from mdp.config import PROJECT_ROOT

RESULTS_DIR = PROJECT_ROOT / "benchmarks"
RESULTS_JSON = RESULTS_DIR / "results.json"
SECTIONS: dict[str, str] = {
    "embed": "mdp.bench.embed:run_embed_bench",
    "ingest": "mdp.bench.ingest:run_ingest_bench",
    "query": "mdp.bench.query:run_query_bench",
    "incremental": "mdp.bench.incremental:run_incremental_bench",
    "scale": "mdp.bench.scale:run_scale_bench",
    "embed_gpu": "mdp.bench.embed_gpu:run_embed_gpu_bench",
}
# the scale section runs only when named (--only scale): it takes tens of minutes
DEFAULT_SECTIONS = ("embed", "ingest", "query", "incremental")
# Sections that need a GPU: run only when asked for, or in place of their CPU twin on a GPU machine.
GPU_SECTIONS = {"embed_gpu": "embed"}


def shared_data_dir() -> Path:
    """../shared/data beside the repository (present on dev machines and in CI)."""
    return PROJECT_ROOT.parent / "shared" / "data"


def _section(name: str) -> Callable[..., dict[str, Any]]:
    module, func = SECTIONS[name].split(":")
    return getattr(import_module(module), func)


def run_benchmarks(
    sections: list[str] | None = None,
    quick: bool = False,
    write: bool = True,
    log: Callable[[str], None] = print,
    chunks: int | None = None,
) -> dict[str, Any]:
    """``chunks`` sizes the scale section (default 1M, 100k when quick)."""
    chosen = sections or list(DEFAULT_SECTIONS)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown benchmark section(s) {unknown}; choose from {list(SECTIONS)}")
    if any(twin in chosen for twin in GPU_SECTIONS.values()):
        from mdp.encoder import gpu_available

        if gpu_available():  # on a GPU machine `--only embed` compares MLX and torch on the GPU
            swap = {twin: gpu for gpu, twin in GPU_SECTIONS.items()}
            chosen = list(dict.fromkeys(swap.get(s, s) for s in chosen))
    results: dict[str, Any] = {
        "meta": {
            "quick": quick,
            "machine": f"{platform.machine()} {platform.system()}",
            "python": platform.python_version(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    }
    for name in chosen:
        log(f"bench: {name} ...")
        started = time.perf_counter()
        try:
            kwargs: dict[str, Any] = {"chunks": chunks, "log": log} if name == "scale" else {}
            results[name] = _section(name)(quick=quick, **kwargs)
        except Exception as exc:  # one broken section must not hide the others
            results[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(limit=3)}
        results[name]["seconds"] = round(time.perf_counter() - started, 2)
        log(f"bench: {name} done in {results[name]['seconds']} s")
    if write:
        previous = latest_results()
        merged = {**previous, **results}
        scale = results.get("scale")
        if isinstance(scale, dict) and "chunks" in scale:  # keep each size: growth is the point
            merged[f"scale_{scale['chunks']}"] = scale
        RESULTS_DIR.mkdir(exist_ok=True)
        RESULTS_JSON.write_text(json.dumps(merged, indent=2, default=float) + "\n")
    return results


def latest_results() -> dict[str, Any]:
    try:
        return json.loads(RESULTS_JSON.read_text())
    except (OSError, ValueError):
        return {}
