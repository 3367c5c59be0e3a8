"""Labelled queries (BEIR layout or a bundled set) and the evaluation of a Retriever on them."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mdp.metrics import evaluate_run
from mdp.retrieval import Retriever

Qrels = dict[str, dict[str, int]]
DEFAULT_K_VALUES = (10, 100)


@dataclass
class BeirData:
    corpus: list[dict[str, Any]]
    queries: dict[str, str]
    qrels: Qrels


@dataclass
class LabelledQueries:
    queries: dict[str, str]
    qrels: Qrels


@dataclass
class EvalReport:
    """Per strategy: ndcg@10, recall@10, recall@100, mrr@10 (and other cutoffs asked for), latencies."""

    strategies: dict[str, dict[str, float]]
    n_queries: int
    version: int
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"n_queries": self.n_queries, "version": self.version, "strategies": self.strategies}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: invalid JSON: {exc}") from exc
    return rows


def load_qrels(path: str | Path) -> Qrels:
    """A BEIR qrels TSV: header ``query-id corpus-id score``, any line endings."""
    path = Path(path)
    qrels: Qrels = {}
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        for n, row in enumerate(reader, 1):
            row = [c.strip() for c in row]
            if not row or not any(row):
                continue
            if n == 1 and not row[-1].lstrip("-").isdigit():
                continue  # header
            if len(row) < 3:
                raise ValueError(f"{path}:{n}: expected 'query-id<TAB>corpus-id<TAB>score', got {row!r}")
            qid, docid, score = row[0], row[1], row[-1]
            try:
                qrels.setdefault(qid, {})[docid] = int(float(score))
            except ValueError:
                raise ValueError(f"{path}:{n}: score {score!r} is not a number") from None
    return qrels


def load_queries(path: str | Path) -> dict[str, str]:
    path = Path(path)
    queries = {}
    for row in _read_jsonl(path):
        if "_id" not in row or "text" not in row:
            raise ValueError(f"{path}: every query needs '_id' and 'text', got keys {sorted(row)}")
        queries[str(row["_id"])] = str(row["text"])
    return queries


def load_beir(directory: str | Path, split: str = "test") -> BeirData:
    """A BEIR dataset folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.

    Only the queries judged in the split are kept.
    """
    directory = Path(directory)
    for needed in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (directory / needed).exists():
            raise FileNotFoundError(f"{directory} is not a BEIR dataset folder: {needed} is missing")
    corpus = []
    for row in _read_jsonl(directory / "corpus.jsonl"):
        corpus.append(
            {
                "_id": str(row["_id"]),
                "title": row.get("title") or "",
                "text": row.get("text") or "",
                "metadata": row.get("metadata") or {},
            }
        )
    qrels = load_qrels(directory / "qrels" / f"{split}.tsv")
    queries = {q: t for q, t in load_queries(directory / "queries.jsonl").items() if q in qrels}
    missing = sorted(set(qrels) - set(queries))
    if missing:
        raise ValueError(f"{directory}: qrels name queries missing from queries.jsonl: {missing[:5]}")
    return BeirData(corpus=corpus, queries=queries, qrels=qrels)


def load_labelled_queries(path: str | Path) -> LabelledQueries:
    """A bundled query set: ``queries.jsonl`` ({"_id","text"}) with ``qrels.tsv`` beside it (BEIR format)."""
    path = Path(path)
    qrels_path = path.with_name("qrels.tsv")
    if not qrels_path.exists():
        raise FileNotFoundError(f"{qrels_path} not found: labelled queries need qrels.tsv beside {path.name}")
    queries = load_queries(path)
    qrels = load_qrels(qrels_path)
    unknown = sorted(set(qrels) - set(queries))
    if unknown:
        raise ValueError(f"{qrels_path}: judgments for queries not in {path.name}: {unknown[:5]}")
    return LabelledQueries(queries={q: t for q, t in queries.items() if q in qrels}, qrels=qrels)


def _metric_names(k_values: Sequence[int]) -> list[str]:
    names = ["ndcg@10", "recall@10", "recall@100", "mrr@10"]
    for k in k_values:
        for base in ("ndcg", "recall", "mrr"):
            name = f"{base}@{k}"
            if name not in names:
                names.append(name)
    return names


def evaluate_retriever(
    retriever: Retriever,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    strategies: Sequence[str] = ("vector", "bm25", "hybrid"),
    k_values: Sequence[int] = DEFAULT_K_VALUES,
    *,
    query_vectors: np.ndarray | None = None,
) -> EvalReport:
    """Rank documents for every judged query with each strategy and score the runs.

    Latency is per query, search only: query vectors are computed once up front (or passed in as
    ``query_vectors`` in ``queries`` order), so the encoder's cost is not in the numbers.
    """
    qids = [q for q in queries if q in qrels]
    texts = [queries[q] for q in qids]
    depth = max([100, *k_values])
    needs_vectors = any(s != "bm25" for s in strategies)
    vectors = None
    if needs_vectors:
        if query_vectors is not None:
            order = {q: i for i, q in enumerate(queries)}
            vectors = np.asarray(query_vectors, dtype=np.float32)[[order[q] for q in qids]]
        else:
            vectors = retriever.encode_queries(texts)
    metrics = _metric_names(k_values)
    report: dict[str, dict[str, float]] = {}
    for strategy in strategies:
        run: dict[str, dict[str, float]] = {}
        latencies = []
        for i, (qid, text) in enumerate(zip(qids, texts, strict=True)):
            qv = vectors[i : i + 1] if vectors is not None and strategy != "bm25" else None
            t0 = time.perf_counter()
            run.update(retriever.rank_documents({qid: text}, strategy, k=depth, vectors=qv))
            latencies.append((time.perf_counter() - t0) * 1000)
        scores = evaluate_run(run, {q: dict(qrels[q]) for q in qids}, metrics)
        scores["latency_p50_ms"] = float(np.percentile(latencies, 50)) if latencies else 0.0
        scores["latency_p95_ms"] = float(np.percentile(latencies, 95)) if latencies else 0.0
        report[strategy] = scores
    return EvalReport(strategies=report, n_queries=len(qids), version=retriever.version)
