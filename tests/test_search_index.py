"""Search structures beside the store: the persisted base, the delta since it, approximate search."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np
import pytest

from mdp.config import RetrievalConfig
from mdp.records import ChunkedDocument, text_document
from mdp.retrieval import Retriever, clear_index_cache
from mdp.schemas import Chunk, text_hash
from mdp.search_index import (
    Analyzer,
    DeltaBM25,
    TokenRows,
    _flatten,
    build_base,
    current_base,
    maintain,
    vector_index_info,
)
from mdp.store import VectorStore

SOURCE = "kb"
WORDS = [
    "cell",
    "protein",
    "gene",
    "tumour",
    "dose",
    "trial",
    "cohort",
    "signal",
    "receptor",
    "pathway",
    "enzyme",
    "immune",
    "virus",
    "bacteria",
    "infection",
    "vaccine",
    "insulin",
    "glucose",
    "neuron",
    "synapse",
    "cortex",
    "memory",
    "sleep",
    "stress",
]


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(5, 30)))) + f" marker{i}" for i in range(n)]


def _vectors(n: int, seed: int = 0, dim: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


Entry = tuple[ChunkedDocument, dict[str, np.ndarray]]  # a document and its chunks' vectors


def _doc(name: str, texts: list[str], vectors: np.ndarray) -> Entry:
    item = text_document(SOURCE, name, texts)
    return item, dict(zip((c.text_hash for c in item.chunks), vectors, strict=True))


def _apply(store: VectorStore, entries: list[Entry], deleted: Sequence[str] = ()) -> None:
    vectors = {h: v for _, by_hash in entries for h, v in by_hash.items()}
    documents = [document for document, _ in entries]
    store.apply(SOURCE, documents, [], deleted, model_id="m", model_version="1", vectors=vectors)


def _store(tmp_path: Path, n_docs: int = 40, per_doc: int = 5) -> tuple[VectorStore, list[str], np.ndarray]:
    texts, vectors = _texts(n_docs * per_doc), _vectors(n_docs * per_doc)
    store = VectorStore(str(tmp_path / "store"))
    upserts = [
        _doc(f"d{d}.txt", texts[d * per_doc : (d + 1) * per_doc], vectors[d * per_doc : (d + 1) * per_doc])
        for d in range(n_docs)
    ]
    _apply(store, upserts)
    return store, texts, vectors


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire"])
def test_delta_bm25_matches_bm25s_given_the_same_statistics(method: str) -> None:
    analyzer = Analyzer()
    vocab: dict[str, int] = {}
    rows = TokenRows(*_flatten(analyzer.to_ids(_texts(300, seed=3), vocab)))
    reference = bm25s.BM25(k1=1.5, b=0.75, method=method)
    reference.index(bm25s.tokenization.Tokenized(ids=rows, vocab=dict(vocab)), show_progress=False)
    doc_freqs = np.diff(np.asarray(reference.scores["indptr"]))
    delta = DeltaBM25(rows, len(vocab), doc_freqs, 300, float(rows.lengths().mean()), 1.5, 0.75, method)
    for query in ["cell protein", "insulin insulin glucose", "marker7 neuron", "sleep"]:
        ids = [vocab[t] for t in analyzer(query) if t in vocab]
        np.testing.assert_allclose(delta.scores(ids), reference.get_scores(ids), rtol=1e-5, atol=1e-6)


def test_delta_bm25_refuses_methods_it_does_not_reproduce() -> None:
    rows = TokenRows(np.zeros(0, np.int32), np.zeros(1, np.int64))
    with pytest.raises(ValueError, match="bm25l"):
        DeltaBM25(rows, 1, np.zeros(1), 1, 1.0, 1.5, 0.75, "bm25l")


def test_base_is_built_once_and_rows_written_since_are_searched_as_delta(tmp_path: Path) -> None:
    store, texts, vectors = _store(tmp_path)
    config = RetrievalConfig(sentence_share=0.0)
    maintain(store, config)
    base = current_base(store, config)
    assert base is not None and len(base) == len(texts) and base.version == store.version()
    # replace one document, delete another, add a new one: no rebuild, a delta
    new_texts = ["a revised passage about zebrafish regeneration", "and its second chunk on fins"]
    _apply(store, [_doc("d1.txt", new_texts, _vectors(2, seed=9))], deleted=[f"{SOURCE}:d2.txt"])
    _apply(store, [_doc("new.txt", ["octopus camouflage uses chromatophores"], _vectors(1, seed=10))])
    maintain(store, config)
    assert current_base(store, config).path == base.path  # small change: the base stays
    clear_index_cache()
    retriever = Retriever(store, config=config)
    info = retriever.describe()
    assert info["delta_rows"] == 3 and info["masked_rows"] == 10 and info["rows"] == len(texts) - 10 + 3
    assert retriever.search("zebrafish regeneration", "bm25", k=1)[0].document_id == f"{SOURCE}:d1.txt"
    assert retriever.search("octopus chromatophores", "bm25", k=1)[0].document_id == f"{SOURCE}:new.txt"
    gone = {f"{SOURCE}:d2.txt", f"{SOURCE}:d1.txt"}
    old_hits = retriever.search(texts[5], "bm25", k=50) + retriever.search(texts[10], "bm25", k=50)
    assert not {h.chunk_id for h in old_hits} & {Chunk.make_id(d, i) for d in gone for i in range(5)}
    # vectors: the delta's rows are found exactly, the masked ones never
    query = _vectors(1, seed=10)
    hits = retriever.search_vectors(["q"], query, "vector", k=5)[0]
    assert hits[0].document_id == f"{SOURCE}:new.txt" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    # the same answers as a base rebuilt at this version
    ranked_delta = [h.chunk_id for h in retriever.search_vectors(["cell gene"], query, "hybrid", k=10)[0]]
    build_base(store, store.version(), config)
    clear_index_cache()
    rebuilt = Retriever(store, config=config)
    assert rebuilt.describe()["delta_rows"] == 0
    assert [h.chunk_id for h in rebuilt.search_vectors(["cell gene"], query, "vector", k=10)[0]] == [
        h.chunk_id for h in retriever.search_vectors(["cell gene"], query, "vector", k=10)[0]
    ]
    assert len(ranked_delta) == 10


def test_large_delta_rebuilds_the_base(tmp_path: Path) -> None:
    store, texts, _ = _store(tmp_path, n_docs=10)
    config = RetrievalConfig(sentence_share=0.0, delta_rebuild_rows=4)
    maintain(store, config)
    first = current_base(store, config)
    _apply(store, [_doc("big.txt", _texts(6, seed=5), _vectors(6, seed=5))])
    done = maintain(store, config)
    assert "base" in done and current_base(store, config).path != first.path
    assert Retriever(store, config=config).describe()["delta_rows"] == 0


def test_approximate_search_uses_the_ann_index_and_reranks_exactly(tmp_path: Path) -> None:
    store, texts, vectors = _store(tmp_path, n_docs=60)
    exact = RetrievalConfig(sentence_share=0.0, vector_search="exact")
    for ann in ("ivf_pq", "ivf_hnsw_sq"):
        approx = RetrievalConfig(
            sentence_share=0.0, vector_search="approximate", ann_index=ann, ann_sub_vectors=4, ann_nprobes=50
        )
        maintain(store, approx)
        info = vector_index_info(store)
        assert info is not None and info["indexed_rows"] == len(texts)
        clear_index_cache()
        retriever = Retriever(store, config=approx)
        assert retriever.describe()["vector_search"] == "approximate"
        assert retriever.describe()["ann_index"] == ann
        hits = retriever.search_vectors(["q"], vectors[17:18], "vector", k=3)[0]
        # the re-rank scores are exact dot products from the stored vectors
        assert hits[0].chunk_id == Chunk.make_id(f"{SOURCE}:d3.txt", 2)
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        want = Retriever(store, config=exact).search_vectors(["q"], vectors[17:18], "vector", k=3)[0]
        assert [h.score for h in hits] == pytest.approx([h.score for h in want], abs=1e-5)


def test_retriever_sees_sentence_vectors_added_after_it_loaded_a_version(tmp_path: Path) -> None:
    """The index cache is keyed by the embedding cache's version too: a backfill of sentence vectors
    (``mdp eval --beir`` on an older index) must reach a Retriever on the same store version."""
    store = VectorStore(str(tmp_path / "store"))
    dim = 4
    near, far = np.eye(dim, dtype=np.float32)[0], np.eye(dim, dtype=np.float32)[1]
    a_texts = ["Alpha opens the first passage here. Zebra sentence matches the query exactly."]
    b_texts = ["Beta passage whose own vector is close to the query."]
    b_vec = (0.8 * near + 0.6 * far)[None, :]
    _apply(store, [_doc("a.txt", a_texts, far[None, :]), _doc("b.txt", b_texts, b_vec)])
    config = RetrievalConfig(vector_weight=1.0, bm25_weight=0.0, sentence_share=1.0)
    clear_index_cache()
    before = Retriever(store, config=config, model_key="m@1")
    assert before.search_vectors(["x"], near[None, :], "hybrid", k=1)[0][0].document_id == f"{SOURCE}:b.txt"
    sentences = ["Alpha opens the first passage here.", "Zebra sentence matches the query exactly."]
    store.put_cached("m@1", [text_hash(s) for s in sentences], np.stack([far, near]))
    after = Retriever(store, config=config, model_key="m@1")
    assert after.search_vectors(["x"], near[None, :], "hybrid", k=1)[0][0].document_id == f"{SOURCE}:a.txt"


def test_cache_lookups_are_batched_and_complete(tmp_path: Path) -> None:
    store = VectorStore(str(tmp_path / "store"))
    hashes = [f"h{i}" for i in range(2_500)]
    vectors = _vectors(2_500, dim=4)
    assert store.put_cached("m", hashes, vectors) == 2_500
    assert store.put_cached("m", hashes[:10] + ["new"], np.concatenate([vectors[:10], vectors[:1]])) == 1
    got = store.get_cached("m", hashes + ["missing"])
    assert len(got) == 2_500 and "missing" not in got
    np.testing.assert_array_equal(got["h2499"], vectors[2499])
    assert store.get_cached("other", hashes[:5]) == {}


def test_manifest_digest_in_arrow_equals_the_documented_formula(tmp_path: Path) -> None:
    import hashlib

    store = VectorStore(str(tmp_path / "store"))
    names = ["b.txt", "a.txt", "ünï'code.txt", "z/deep.txt"]
    _apply(store, [_doc(n, [f"text of {n}"], _vectors(1, seed=i)) for i, n in enumerate(names)])
    h = hashlib.sha256()
    for doc_id, entry in sorted(store.manifest().items()):
        h.update(f"{doc_id}\t{entry.content_hash}\n".encode())
    assert store.manifest_digest() == h.hexdigest()
    assert store.manifest_digest("nowhere") == hashlib.sha256().hexdigest()


def test_one_store_handle_per_store_and_mode(tmp_path: Path) -> None:
    from mdp.config import StoreConfig

    config = StoreConfig(uri=str(tmp_path / "store"))
    assert VectorStore.shared(config) is VectorStore.shared(config)
    assert VectorStore.shared(config, read_only=True) is not VectorStore.shared(config)
    assert VectorStore.shared(StoreConfig(uri=str(tmp_path / "other"))) is not VectorStore.shared(config)
