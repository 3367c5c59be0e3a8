"""Evaluation: labelled queries (BEIR layout or a bundled set), a Retriever scored on them
(``eval_stage``, behind retrieval_eval), and the BEIR harness (``mdp eval --beir``)."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel

from mdp.config import JsonlOptions, MdpConfig, SourceConfig
from mdp.metrics import evaluate_run
from mdp.reports import StageClock
from mdp.retrieval import Retriever

if TYPE_CHECKING:
    from mdp.encoder import SentenceEncoder
    from mdp.stages.ingest import ProgressFactory
    from mdp.store import VectorStore

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


class EvalResult(BaseModel):
    """The scores of one evaluation (small: it is what retrieval_eval hands its regression check)."""

    index_version: int | None
    n_queries: int
    strategies: dict[str, dict[str, float]]
    note: str = ""
    queries_source: str = ""

    def markdown(self) -> str:
        if not self.strategies:
            return self.note or "no evaluation"
        metrics = list(next(iter(self.strategies.values())).keys())
        lines = ["| strategy | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
        for strategy, scores in self.strategies.items():
            lines.append(f"| {strategy} | " + " | ".join(f"{scores[m]:.4f}" for m in metrics) + " |")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "index_version": self.index_version,
            "queries": self.n_queries,
            "queries_source": self.queries_source,
            "strategies": self.strategies,
            "note": self.note,
            "table": self.markdown(),
        }


def eval_stage(
    config: MdpConfig,
    store: VectorStore,
    encoder: SentenceEncoder,
    queries: dict[str, str] | None = None,
    qrels: dict[str, dict[str, int]] | None = None,
) -> EvalResult:
    """Score every configured strategy on labelled queries (the configured set unless given)."""
    from mdp.retrieval import retrieval_config

    version = store.version()
    origin = "given"
    if queries is None or qrels is None:
        path = config.eval.queries
        if path is None or not Path(path).exists():
            note = (
                "no labelled queries: set [eval] queries in mdp.toml to a queries.jsonl "
                "with qrels.tsv beside it"
                if path is None
                else f"labelled queries not found at {path}: run `mdp sample` or fix [eval] queries"
            )
            return EvalResult(index_version=version, n_queries=0, strategies={}, note=note)
        labelled = load_labelled_queries(path)
        queries, qrels = labelled.queries, labelled.qrels
        origin = str(path)
    if not store.count_chunks():
        note = "the index is empty: ingest a source first"
        return EvalResult(index_version=version, n_queries=len(queries), strategies={}, note=note)
    retriever = Retriever(store, encoder, config=retrieval_config(config))
    report = evaluate_retriever(retriever, queries, qrels, config.eval.strategies)
    return EvalResult(
        index_version=version, n_queries=len(queries), strategies=report.strategies, queries_source=origin
    )


BEIR_PROTOCOLS = ("passages", "pipeline")


def evaluate_beir(
    config: MdpConfig,
    beir_dir: Path,
    protocol: str = "passages",
    progress: ProgressFactory | None = None,
    show_embed_progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Index a BEIR folder's corpus.jsonl through the normal pipeline, then score it on its qrels.

    ``protocol="passages"`` is BEIR's: each document (title and text) is one passage that the
    encoder truncates at its window, so scores compare with published ones. ``"pipeline"`` keeps
    the configured chunking; documents are then ranked by their best chunk.
    """
    if protocol not in BEIR_PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(BEIR_PROTOCOLS)}")
    from mdp.encoder import SentenceEncoder
    from mdp.stages import backfill_sentence_vectors, run_ingest
    from mdp.store import VectorStore

    data = load_beir(beir_dir)
    config = config.model_copy(deep=True)
    config.parsing.jsonl = JsonlOptions(id_field="_id", text_fields=["title", "text"], title_field="title")
    if protocol == "passages":
        config.chunking.strategy = "document"
    source = SourceConfig(name=f"beir-{beir_dir.name}", root=beir_dir, include=["corpus.jsonl"])
    clock = StageClock()
    store = VectorStore.from_config(config.store)
    encoder = SentenceEncoder.from_config(config.model)
    clock.lap("load_encoder")
    ingest = run_ingest(
        config,
        [source],
        encoder=encoder,
        store=store,
        progress=progress,
        show_embed_progress=show_embed_progress,
        log=log,
    )
    clock.lap("ingest")
    if config.embeds_sentences():  # an index from before sentence vectors gets them now
        backfill_sentence_vectors(store, encoder, progress=show_embed_progress)
    clock.lap("sentence_backfill")
    result = eval_stage(config, store, encoder, queries=data.queries, qrels=data.qrels)
    clock.lap("eval")
    out = result.as_dict()
    out["queries_source"] = str(beir_dir)
    out["protocol"] = protocol
    out["ingest"] = {k: v for k, v in ingest.as_dict().items() if k not in ("quarantine", "sources")}
    out["seconds"] = {**clock.seconds, "total": round(sum(clock.seconds.values()), 3)}
    out["encoder"] = {k: encoder.info()[k] for k in ("device", "gpu_name", "dtype", "device_batch_tokens")}
    return out


def generated_queries(
    store: VectorStore, generate: Callable[[list[tuple[str, str]]], list[Any]]
) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Labelled queries written by a local language model from the index's own chunks.

    Each generated question is judged relevant to the document of the chunk it was written from.
    """
    from mdp.querygen import to_labelled_queries

    frame = store.chunks_frame(columns=["id", "external_id", "text"])
    chunks = list(zip(frame["id"].tolist(), frame["text"].tolist(), strict=True))
    external = dict(zip(frame["id"].tolist(), frame["external_id"].tolist(), strict=True))
    labelled = to_labelled_queries(generate(chunks), external)
    return {q.id: q.text for q in labelled}, {q.id: dict(q.relevant) for q in labelled}
