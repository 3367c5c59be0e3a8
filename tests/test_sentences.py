"""Sentence vectors: the split, what the embed stage stores, and how hybrid search uses them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mdp.config import MdpConfig, SourceConfig
from mdp.retrieval import RetrievalConfig, Retriever, clear_index_cache
from mdp.sentences import chunk_sentences, split_sentences
from mdp.stages import backfill_sentence_vectors, run_ingest
from mdp.store import VectorStore


def test_split_keeps_every_word_and_lines_apart() -> None:
    text = (
        "Glacier retreat\n\nIce sheets (e.g. in Greenland) lose mass. Melt rose by 12% in 2019! "
        "Why? Warmer summers. Fig. 2 shows the trend."
    )
    sentences = split_sentences(text)
    assert sentences[0] == "Glacier retreat"  # a title line stays a sentence of its own
    assert sentences[1] == "Ice sheets (e.g. in Greenland) lose mass."
    assert sentences[2:] == ["Melt rose by 12% in 2019! Why?", "Warmer summers.", "Fig. 2 shows the trend."]
    assert " ".join(sentences).split() == text.split()
    quoted = 'They wrote "it works." Then (in 2020) it failed.'
    assert split_sentences(quoted) == ['They wrote "it works."', "Then (in 2020) it failed."]
    assert chunk_sentences("One sentence only.") == []
    assert split_sentences("  \n ") == []


PASSAGES = {
    "glaciers.md": "# Glaciers\n\nGlaciers carve deep valleys as the ice moves downhill. "
    "Their meltwater feeds rivers in summer. Sea level rises when land ice melts into the ocean.",
    "coffee.md": "# Coffee\n\nEspresso is brewed by forcing hot water through finely ground coffee. "
    "Arabica beans grow at high altitude. Roasting turns green beans brown.",
    "bees.md": "# Bees\n\nHoney bees tell each other where flowers are with a waggle dance. "
    "A colony can hold fifty thousand workers.",
}


@pytest.fixture()
def indexed(tmp_path: Path, encoder) -> tuple[MdpConfig, VectorStore]:
    root = tmp_path / "corpus"
    root.mkdir()
    for name, text in PASSAGES.items():
        (root / name).write_text(text)
    config = MdpConfig(sources=[SourceConfig(name="kb", root=root)])
    config.store.uri = str(tmp_path / "store")
    config.model.sentence_vectors = False
    store = VectorStore(config.store.uri)
    report = run_ingest(config, encoder=encoder, store=store).as_dict()
    assert report["chunked_documents"] == 3
    return config, store


def test_sentence_vectors_are_stored_and_score_the_best_sentence(indexed, encoder) -> None:
    _, store = indexed
    clear_index_cache()
    index = Retriever(store, encoder)._current()
    assert not index.has_sentences  # ingested with [model] sentence_vectors = false
    rows = np.arange(len(index))
    texts = {p: r["text"] for p, r in index.fetch(rows, ["text"]).items()}

    wanted = {s for text in texts.values() for s in chunk_sentences(text)}
    assert backfill_sentence_vectors(store, encoder) == len(wanted) > 0
    assert backfill_sentence_vectors(store, encoder) == 0  # all cached now
    clear_index_cache()
    index = Retriever(store, encoder)._current()  # the search index is rebuilt with them
    assert index.has_sentences and index.sentence_count >= len(wanted)

    query = encoder.encode(["where does sea level rise come from"])[0]
    chunk_scores = index.exact_vector_scores(query[None, :])[0]
    best = index.best_sentence_scores(rows, query)
    for row in rows:
        sentences = chunk_sentences(texts[int(row)])
        expected = (encoder.encode(sentences) @ query).max() if sentences else chunk_scores[row]
        assert best[row] == pytest.approx(float(expected), abs=1e-5)
    assert np.allclose(index.all_best_sentence_scores(query), best, atol=1e-6)


def test_hybrid_with_and_without_the_sentence_signal(indexed, encoder) -> None:
    _, store = indexed
    backfill_sentence_vectors(store, encoder)
    clear_index_cache()
    query = "how do bees communicate the location of flowers"
    for share in (0.0, 0.5, 1.0):
        retriever = Retriever(store, encoder, config=RetrievalConfig(sentence_share=share))
        for fusion in ("weighted", "rrf"):
            for exact_limit in (0, 100_000):  # candidates only, or every sentence
                retriever.config = RetrievalConfig(
                    sentence_share=share, fusion=fusion, sentence_exact_limit=exact_limit
                )
                hits = retriever.search(query, "hybrid", k=3)
                assert hits[0].document_id.endswith("bees.md"), (share, fusion, exact_limit, hits)
    # the sentence signal changes scores: a third normalised list joins the fusion
    plain = Retriever(store, encoder, config=RetrievalConfig(sentence_share=0.0)).search(query, "hybrid", k=3)
    mixed = Retriever(store, encoder, config=RetrievalConfig(sentence_share=0.5)).search(query, "hybrid", k=3)
    assert [h.score for h in plain] != [h.score for h in mixed]


@pytest.mark.parametrize("strategy", ["by_title", "document"])
def test_sentences_are_embedded_for_whole_passages_by_default(tmp_path: Path, encoder, strategy: str) -> None:
    """[model] sentence_vectors unset: on for whole passages (chunking "document"), off for chunks."""
    from mdp.retrieval import retrieval_config

    root = tmp_path / "corpus"
    root.mkdir()
    (root / "coffee.md").write_text(PASSAGES["coffee.md"])
    config = MdpConfig(sources=[SourceConfig(name="kb", root=root)])
    config.store.uri = str(tmp_path / "store")
    config.chunking.strategy = strategy  # type: ignore[assignment]
    store = VectorStore(config.store.uri)
    report = run_ingest(config, encoder=encoder, store=store).as_dict()
    whole = strategy == "document"
    assert config.embeds_sentences() is whole
    assert report["chunks"] == 1 if whole else report["chunks"] >= 1
    clear_index_cache()
    retriever = Retriever(store, encoder, config=retrieval_config(config))
    assert retriever._current().has_sentences is whole
    assert (retriever.config.sentence_share > 0) is whole
