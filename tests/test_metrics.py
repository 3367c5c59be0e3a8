"""Our metrics against ranx (the reference) on random runs and on a real BM25 run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mdp.metrics import evaluate_run, parse_metric, per_query

ranx = pytest.importorskip("ranx", reason="ranx is a dev dependency (pip install -e '.[dev]')")

METRICS = [
    "ndcg@10",
    "ndcg@3",
    "ndcg",
    "recall@10",
    "recall@100",
    "mrr@10",
    "mrr",
    "precision@5",
    "precision@10",
]
SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


def ranx_scores(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    # ranx drops non-positive judgments itself only through rel_lvl; give it the positive ones,
    # and empty runs need a placeholder entry (ranx refuses empty dicts).
    ranx_qrels = ranx.Qrels(
        {q: {d: r for d, r in j.items() if r > 0} or {"__none__": 0} for q, j in qrels.items()}
    )
    filled = {q: (run.get(q) or {"__nothing__": -1e9}) for q in qrels}
    out = ranx.evaluate(ranx_qrels, ranx.Run(filled), METRICS, make_comparable=True)
    return {m: float(v) for m, v in out.items()}


def random_case(seed: int) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    rng = np.random.default_rng(seed)
    docs = [f"d{i}" for i in range(60)]
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for q in range(40):
        qid = f"q{q}"
        judged = rng.choice(docs, size=int(rng.integers(1, 8)), replace=False)
        qrels[qid] = {str(d): int(rng.integers(0, 4)) for d in judged}
        if q % 13 == 5:
            continue  # a query the run has no results for
        retrieved = rng.choice(docs, size=int(rng.integers(1, 50)), replace=False)
        scores = rng.random(len(retrieved))  # distinct floats: no ties
        run[qid] = {str(d): float(s) for d, s in zip(retrieved, scores, strict=True)}
    return run, qrels


@pytest.mark.parametrize("seed", range(5))
def test_matches_ranx_on_random_runs(seed: int) -> None:
    run, qrels = random_case(seed)
    ours = evaluate_run(run, qrels, METRICS)
    theirs = ranx_scores(run, qrels)
    for metric in METRICS:
        assert ours[metric] == pytest.approx(theirs[metric], abs=1e-6), metric


def test_hand_computed_values() -> None:
    qrels = {"q": {"a": 2, "b": 1, "c": 0}}
    run = {"q": {"x": 0.9, "a": 0.8, "c": 0.7, "b": 0.6}}
    got = evaluate_run(run, qrels, ["ndcg@3", "recall@2", "mrr@10", "precision@4", "mrr@1"])
    dcg = 2 / math.log2(3)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert got["ndcg@3"] == pytest.approx(dcg / idcg)
    assert got["recall@2"] == 0.5
    assert got["mrr@10"] == 0.5
    assert got["precision@4"] == 0.5
    assert got["mrr@1"] == 0.0


def test_missing_queries_score_zero_and_bad_names_fail() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    assert evaluate_run({"q1": {"a": 1.0}}, qrels, ["ndcg@10"])["ndcg@10"] == 0.5
    assert per_query({}, qrels, ["mrr@10"])["mrr@10"] == {"q1": 0.0, "q2": 0.0}
    assert parse_metric("recall@100") == ("recall", 100)
    with pytest.raises(ValueError, match="unknown metric"):
        parse_metric("map@10")
    with pytest.raises(ValueError, match="positive integer"):
        parse_metric("ndcg@x")


@pytest.mark.skipif(not SCIFACT.exists(), reason=f"SciFact not found at {SCIFACT} (../shared is absent)")
def test_matches_ranx_on_a_real_run() -> None:
    import bm25s
    import Stemmer

    from mdp.evaluation import load_beir

    data = load_beir(SCIFACT)
    stemmer = Stemmer.Stemmer("english")
    texts = [f"{d['title']} {d['text']}" for d in data.corpus]
    model = bm25s.BM25()
    model.index(
        bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False
    )
    qids = list(data.queries)
    tokens = bm25s.tokenize(
        [data.queries[q] for q in qids], stopwords="en", stemmer=stemmer, show_progress=False
    )
    idx, scores = model.retrieve(tokens, k=100, show_progress=False)
    run = {
        q: {
            data.corpus[int(i)]["_id"]: float(s) + 1e-7 * (100 - r)
            for r, (i, s) in enumerate(zip(ii, ss, strict=True))
        }
        for q, ii, ss in zip(qids, idx, scores, strict=True)
    }
    ours = evaluate_run(run, data.qrels, METRICS)
    theirs = ranx_scores(run, data.qrels)
    for metric in METRICS:
        assert ours[metric] == pytest.approx(theirs[metric], abs=1e-6), metric
    assert ours["ndcg@10"] > 0.6
