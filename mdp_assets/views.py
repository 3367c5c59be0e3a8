"""Small views for the UI's metadata panels: version history, an nDCG-by-version plot.

Metadata stays small and scalar; the plot is a PNG file beside the store, linked by path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg


def version_history_md(versions: list[Any], limit: int = 6) -> str:
    rows = sorted(versions, key=lambda v: v.version)[-limit:]
    lines = ["| version | written (UTC) | chunks | source |", "|---|---|---|---|"]
    for v in reversed(rows):
        stamp = v.timestamp.strftime("%Y-%m-%d %H:%M") if getattr(v, "timestamp", None) else ""
        lines.append(f"| {v.version} | {stamp} | {v.rows if v.rows is not None else ''} | {v.source or ''} |")
    return "\n".join(lines)


def eval_history(
    instance: dg.DagsterInstance, strategies: list[str], metric: str = "ndcg@10", limit: int = 30
) -> list[tuple[int, dict[str, float]]]:
    """(index version, {strategy: metric}) of earlier retrieval_eval materializations, oldest first."""
    result = instance.fetch_materializations(dg.AssetKey("retrieval_eval"), limit=limit)
    history = []
    for record in result.records:
        mat = record.asset_materialization
        if mat is None:
            continue
        meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
        scores = {s: float(meta[f"{s}/{metric}"]) for s in strategies if f"{s}/{metric}" in meta}
        if scores:
            history.append((int(meta.get("index_version", 0) or 0), scores))
    return list(reversed(history))


def plot_history(
    history: list[tuple[int, dict[str, float]]], path: Path, metric: str = "ndcg@10"
) -> Path | None:
    """nDCG by strategy across evaluations (x: evaluation, labelled with the index version)."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strategies = sorted({s for _, scores in history for s in scores})
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
    xs = list(range(len(history)))
    for strategy in strategies:
        ax.plot(xs, [scores.get(strategy, float("nan")) for _, scores in history], marker="o", label=strategy)
    ax.set_xticks(xs, [f"v{version}" for version, _ in history], rotation=45, fontsize=7)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by strategy across evaluations (index version)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
