"""IR metrics, written here and checked against ranx (tests/test_metrics.py).

Conventions (the same as trec_eval and ranx):

- A run ranks each query's documents by score, descending; ties keep the run's insertion order.
- Judgments with a score <= 0 are non-relevant.
- ``ndcg@k``: graded gain ``rel`` and discount ``1 / log2(rank + 1)`` (Järvelin & Kekäläinen),
  normalised by the ideal ordering of the query's judgments truncated at k.
- ``recall@k``: relevant documents in the top k / all relevant documents.
- ``precision@k``: relevant documents in the top k / k.
- ``mrr@k``: 1 / rank of the first relevant document in the top k, else 0.
- A metric without ``@k`` looks at the whole run.
- The mean is over every query in qrels; a query missing from the run, or with no relevant
  document, scores 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]

METRICS = ("ndcg", "recall", "precision", "mrr")


def _ranked(results: Mapping[str, float]) -> list[str]:
    # sorted() is stable, so equal scores keep the run's order.
    return [doc for doc, _ in sorted(results.items(), key=lambda item: -item[1])]


def _relevant(judgments: Mapping[str, int]) -> dict[str, int]:
    return {doc: int(rel) for doc, rel in judgments.items() if rel > 0}


def ndcg(ranking: Sequence[str], relevant: Mapping[str, int], k: int | None) -> float:
    top = ranking if k is None else ranking[:k]
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(top))
    ideal_gains = sorted(relevant.values(), reverse=True)
    if k is not None:
        ideal_gains = ideal_gains[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal_gains))
    return dcg / idcg if idcg > 0 else 0.0


def recall(ranking: Sequence[str], relevant: Mapping[str, int], k: int | None) -> float:
    if not relevant:
        return 0.0
    top = ranking if k is None else ranking[:k]
    return sum(1 for doc in top if doc in relevant) / len(relevant)


def precision(ranking: Sequence[str], relevant: Mapping[str, int], k: int | None) -> float:
    top = ranking if k is None else ranking[:k]
    denominator = k if k is not None else len(top)
    if not denominator:
        return 0.0
    return sum(1 for doc in top if doc in relevant) / denominator


def mrr(ranking: Sequence[str], relevant: Mapping[str, int], k: int | None) -> float:
    top = ranking if k is None else ranking[:k]
    for i, doc in enumerate(top):
        if doc in relevant:
            return 1.0 / (i + 1)
    return 0.0


_FUNCTIONS: dict[str, Callable[[Sequence[str], Mapping[str, int], int | None], float]] = {
    "ndcg": ndcg,
    "recall": recall,
    "precision": precision,
    "mrr": mrr,
}


def parse_metric(name: str) -> tuple[str, int | None]:
    """``"ndcg@10" -> ("ndcg", 10)``; ``"mrr" -> ("mrr", None)``."""
    base, _, cutoff = name.partition("@")
    if base not in _FUNCTIONS:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)} (optionally @k)")
    if not cutoff:
        return base, None
    if not cutoff.isdigit() or int(cutoff) <= 0:
        raise ValueError(f"metric {name!r}: the cutoff after @ must be a positive integer")
    return base, int(cutoff)


def per_query(run: Run, qrels: Qrels, metrics: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{metric: {qid: value}}`` for every query in qrels."""
    parsed = [(m, *parse_metric(m)) for m in metrics]
    out: dict[str, dict[str, float]] = {m: {} for m in metrics}
    for qid, judgments in qrels.items():
        relevant = _relevant(judgments)
        ranking = _ranked(run.get(qid, {}))
        for name, base, k in parsed:
            out[name][qid] = _FUNCTIONS[base](ranking, relevant, k)
    return out


def evaluate_run(run: Run, qrels: Qrels, metrics: Sequence[str]) -> dict[str, float]:
    """Mean of each metric over the judged queries, e.g. ``{"ndcg@10": 0.68, "recall@100": 0.92}``."""
    scores = per_query(run, qrels, metrics)
    return {m: (sum(v.values()) / len(v) if v else 0.0) for m, v in scores.items()}
