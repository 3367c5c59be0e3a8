"""The plain-Python pipeline end to end: real parsers, real MLX encoder, real LanceDB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_DOCUMENTS, TINY_QUARANTINED

from mdp.config import MdpConfig, SourceConfig
from mdp.stages import run_ingest
from mdp.store import VectorStore


def _config(corpus: Path, store: Path) -> MdpConfig:
    config = MdpConfig(sources=[SourceConfig(name="tiny", root=corpus)])
    config.store.uri = str(store)
    config.parsing.workers = 2
    return config


@pytest.fixture()
def setup(tiny_corpus: Path, tmp_path: Path, encoder):
    config = _config(tiny_corpus, tmp_path / "store")
    store = VectorStore(config.store.uri)
    return config, store, encoder, tiny_corpus


def _ingest(setup):
    config, store, encoder, _ = setup
    return run_ingest(config, encoder=encoder, store=store).as_dict()


def test_every_document_is_chunked_or_quarantined(setup):
    report = _ingest(setup)
    assert report["discovered"] == TINY_DOCUMENTS
    assert report["quarantined"] == TINY_QUARANTINED
    assert report["chunked_documents"] + report["quarantined"] == report["discovered"]
    assert report["embedded"] == report["chunks"] > 0
    (bad,) = report["quarantine"]
    assert bad["path"].endswith("facts.jsonl") and "line 3" in bad["reason"]
    _, store, _, _ = setup
    assert store.count_chunks() == report["chunks"]
    frame = store.chunks_frame()
    assert set(frame["source"]) == {"tiny"}
    vectors = np.stack(frame["vector"].to_numpy())
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)


def test_rerun_is_a_no_op_and_changes_are_incremental(setup):
    first = _ingest(setup)
    again = _ingest(setup)
    assert again["embedded"] == 0
    assert again["parsed_files"] == 0
    assert again["index_version"] == first["index_version"]
    assert again["chunks"] == first["chunks"]

    _, store, _, corpus = setup
    changed = corpus / "guide" / "chunking.md"
    changed.write_text(changed.read_text() + "\nOverlap between chunks is configurable in tokens.\n")
    third = _ingest(setup)
    assert third["parsed_files"] == 1
    assert 1 <= third["embedded"] <= 2  # only the changed document's new chunk text
    assert third["index_version"] > first["index_version"]
    ids = set(store.chunks_frame(columns=["document_id"])["document_id"])
    assert "tiny:guide/chunking.md" in ids

    (corpus / "notes.txt").unlink()
    fourth = _ingest(setup)
    assert fourth["embedded"] == 0
    assert fourth["discovered"] == TINY_DOCUMENTS - 1
    ids = set(store.chunks_frame(columns=["document_id"])["document_id"])
    assert "tiny:notes.txt" not in ids
    assert store.count_chunks() == fourth["chunks"]


def test_changed_jsonl_record_replaces_only_that_record(setup):
    first = _ingest(setup)
    _, store, _, corpus = setup
    text = (corpus / "facts.jsonl").read_text().replace("wild yeast starter", "natural leaven")
    (corpus / "facts.jsonl").write_text(text)
    second = _ingest(setup)
    assert second["embedded"] == 1
    assert second["chunks"] == first["chunks"]
    frame = store.chunks_frame(columns=["document_id", "text"])
    sourdough = frame[frame["document_id"] == "tiny:facts.jsonl#r1"]["text"].tolist()
    assert len(sourdough) == 1 and "natural leaven" in sourdough[0]


@pytest.mark.parametrize("whole_documents", [False, True])
def test_truncation_fails_the_embedding_check_unless_documents_are_whole(whole_documents: bool) -> None:
    """A chunk over the encoder's window loses text (a failure), except under the BEIR protocol
    ([chunking] strategy = "document"), whose passages the encoder truncates by design."""
    from mdp.quality import embeddings_are_sane
    from mdp.records import ChunkedDocument
    from mdp.schemas import Chunk, Document
    from mdp.stages import EmbeddedBatch

    doc = Document(
        id="s:a.md", source="s", uri="file:///a.md", path="/a.md", external_id="a.md",
        content_hash="a" * 64, format="markdown",
    )  # fmt: skip
    chunk = Chunk(id=Chunk.make_id(doc.id, 0), document_id=doc.id, text="long", position=0, token_count=300)
    vector = np.ones(4, dtype=np.float32) / 2.0
    batch = EmbeddedBatch(
        source="s", documents=[ChunkedDocument(doc, [chunk], "f" * 64)], embedded=1, model_id="m",
        model_version="v", dim=4, encoder_max_tokens=256, truncation_expected=whole_documents,
    )  # fmt: skip
    outcome = embeddings_are_sane(batch, {chunk.text_hash: vector})
    assert outcome.passed is whole_documents
    assert outcome.metadata["chunks_over_encoder_limit"] == 1
    assert ("embeds each document's first window" in outcome.summary) is whole_documents
