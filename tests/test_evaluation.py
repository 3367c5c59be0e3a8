"""Loading BEIR folders and labelled query sets; evaluating a Retriever end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_retrieval import CORPUS, ENCODER, doc_entry, index

from mdp.evaluation import evaluate_retriever, load_beir, load_labelled_queries, load_qrels
from mdp.retrieval import Retriever
from mdp.store import VectorStore


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_load_beir_with_header_and_crlf(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "corpus.jsonl", [{"_id": "d1", "title": "T", "text": "x"}, {"_id": "d2", "text": "y"}]
    )
    write_jsonl(
        tmp_path / "queries.jsonl", [{"_id": "q1", "text": "first"}, {"_id": "q9", "text": "unjudged"}]
    )
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_bytes(b"query-id\tcorpus-id\tscore\r\nq1\td1\t1\r\nq1\td2\t0\r\n")
    data = load_beir(tmp_path)
    assert data.corpus[1] == {"_id": "d2", "title": "", "text": "y", "metadata": {}}
    assert data.queries == {"q1": "first"}
    assert data.qrels == {"q1": {"d1": 1, "d2": 0}}
    with pytest.raises(FileNotFoundError, match="qrels/dev.tsv is missing"):
        load_beir(tmp_path, split="dev")


def test_load_qrels_without_header(tmp_path: Path) -> None:
    (tmp_path / "q.tsv").write_text("q1\td1\t2\nq2\td3\t1\n")
    assert load_qrels(tmp_path / "q.tsv") == {"q1": {"d1": 2}, "q2": {"d3": 1}}


def test_load_labelled_queries(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "queries.jsonl", [{"_id": "a", "text": "cats"}, {"_id": "b", "text": "no labels"}])
    with pytest.raises(FileNotFoundError, match=r"qrels\.tsv"):
        load_labelled_queries(tmp_path / "queries.jsonl")
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\na\tcats.md\t1\n")
    labelled = load_labelled_queries(tmp_path / "queries.jsonl")
    assert labelled.queries == {"a": "cats"} and labelled.qrels == {"a": {"cats.md": 1}}


def test_evaluate_retriever_reports_every_strategy(tmp_path: Path) -> None:
    store = VectorStore(str(tmp_path / "store"))
    index(store, [doc_entry(n, p) for n, p in CORPUS.items()])
    queries = {"q1": "purring kitten", "q2": "yeast flour baking", "q3": "orbit launch"}
    qrels = {"q1": {"cats.md": 1}, "q2": {"bread.md": 2}, "q3": {"rockets.md": 1, "ocean.md": 0}}
    report = evaluate_retriever(
        Retriever(store, ENCODER), queries, qrels, ["vector", "bm25", "hybrid"], [10, 100]
    )
    assert report.n_queries == 3 and report.version == store.version()
    for strategy in ("vector", "bm25", "hybrid"):
        scores = report.strategies[strategy]
        for key in ("ndcg@10", "recall@10", "recall@100", "mrr@10", "latency_p50_ms", "latency_p95_ms"):
            assert key in scores
        assert scores["recall@100"] == 1.0
        assert 0 < scores["ndcg@10"] <= 1
    assert report.strategies["bm25"]["mrr@10"] == 1.0
    assert set(report.to_dict()) == {"n_queries", "version", "strategies"}
