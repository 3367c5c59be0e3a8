"""BM25 on BEIR SciFact through our own store and Retriever must reach the published quality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mdp.evaluation import evaluate_retriever, load_beir
from mdp.records import ChunkedDocument
from mdp.retrieval import Retriever
from mdp.schemas import Chunk, Document, sha256_bytes
from mdp.store import VectorStore

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not SCIFACT.exists(),
        reason=f"SciFact is not available at {SCIFACT}: the shared data folder (../shared) is absent",
    ),
]


def test_bm25_ndcg_on_scifact(tmp_path: Path) -> None:
    data = load_beir(SCIFACT)
    assert (len(data.corpus), len(data.queries)) == (5183, 300)
    rng = np.random.default_rng(0)
    documents: list[ChunkedDocument] = []
    vectors: dict[str, np.ndarray] = {}
    for row in data.corpus:
        text = f"{row['title']} {row['text']}".strip()
        doc_id = f"scifact:corpus.jsonl#{row['_id']}"
        document = Document(
            id=doc_id,
            source="scifact",
            uri=f"file://{SCIFACT}/corpus.jsonl#{row['_id']}",
            path=str(SCIFACT / "corpus.jsonl"),
            external_id=row["_id"],
            content_hash=sha256_bytes(text.encode()),
            format="jsonl",
        )
        chunk = Chunk(id=Chunk.make_id(doc_id, 0), document_id=doc_id, text=text, position=0, token_count=1)
        # BM25 does not look at vectors; random ones (never zero) keep the store valid.
        vector = rng.normal(size=(1, 16)).astype(np.float32)
        documents.append(ChunkedDocument(document, [chunk]))
        vectors[chunk.text_hash] = vector[0] / np.linalg.norm(vector)
    store = VectorStore(str(tmp_path / "store"))
    store.apply("scifact", documents, model_id="random", model_version="1", vectors=vectors)
    assert store.count_chunks() == 5183
    report = evaluate_retriever(Retriever(store), data.queries, data.qrels, ["bm25"])
    bm25 = report.strategies["bm25"]
    assert bm25["ndcg@10"] >= 0.686, bm25
    assert bm25["recall@100"] >= 0.9, bm25
