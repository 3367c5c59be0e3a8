"""Document ids that cannot collide: one encoding, reversible, used by every stage.

Defects covered (issue 12): a '#' in a file name made the file vanish and come back on
alternate runs, each no-op run wrote a new index version (6); a duplicate JSONL id reused the
first record's id, two manifest rows shared one key and every later run failed (5).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp.config import MdpConfig, SourceConfig
from mdp.records import ChunkedDocument, QuarantinedDocument
from mdp.schemas import Chunk, Document, QuarantineRecord
from mdp.stages import run_ingest
from mdp.store import VectorStore

# file names as Linux gives them to Python: any text, undecodable bytes as surrogate escapes
name_parts = st.lists(
    st.one_of(
        st.characters(blacklist_categories=["Cs"], blacklist_characters="/\x00"),
        st.sampled_from(
            ["#", "%", "@", ":", "::", "\n", "\r", "\u2028", "\u202e", "%23", "%u0041", "\udcff"]
        ),
    ),
    min_size=1,
    max_size=8,
).map("".join)
relpaths = st.lists(
    name_parts.filter(lambda part: part not in (".", "..")),
    min_size=1,
    max_size=3,
).map("/".join)
record_ids = st.text(min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(relpaths, st.one_of(st.none(), record_ids))
def test_record_ids_round_trip(relpath: str, record_id: str | None) -> None:
    from mdp.ids import DocumentKey, document_id, parse_document_id

    doc_id = document_id("src", relpath, record_id)
    assert parse_document_id(doc_id) == DocumentKey("src", relpath, record_id=record_id)
    assert "\n" not in doc_id and "\r" not in doc_id
    doc_id.encode("utf-8")  # storable: no lone surrogates left


@settings(max_examples=200, deadline=None)
@given(relpaths, st.integers(1, 10**9))
def test_line_ids_round_trip_and_never_meet_record_ids(relpath: str, line: int) -> None:
    from mdp.ids import DocumentKey, document_id, parse_document_id

    doc_id = document_id("src", relpath, line=line)
    assert parse_document_id(doc_id) == DocumentKey("src", relpath, line=line)
    for record_id in (f"line-{line}", f"@{line}", str(line), f"L{line}"):
        assert document_id("src", relpath, record_id) != doc_id


def test_plain_ids_stay_readable() -> None:
    from mdp.ids import document_id

    assert document_id("tiny", "guide/a.md") == "tiny:guide/a.md"
    assert document_id("tiny", "facts.jsonl", "r1") == "tiny:facts.jsonl#r1"
    assert document_id("tiny", "facts.jsonl", line=7) == "tiny:facts.jsonl@7"
    assert document_id("tiny", "a#b.md") == "tiny:a%23b.md"
    assert document_id("tiny", "a#b.md") != document_id("tiny", "a", "b.md")


def test_malformed_ids_are_refused_with_a_reason() -> None:
    from mdp.ids import parse_document_id

    for bad in ("no-colon", "src:a@x", "src:a%2"):
        with pytest.raises(ValueError, match="document id"):
            parse_document_id(bad)


# ------------------------------------------------------------------ through the pipeline


def _config(root: Path, store: Path) -> MdpConfig:
    config = MdpConfig(sources=[SourceConfig(name="ids", root=root)])
    config.store.uri = str(store)
    config.parsing.workers = 2
    return config


ODD_NAMES = [
    "a#b.md",
    "notes #1.txt",
    "50%.txt",
    "%23.txt",
    "mail@host.txt",
    "line\nbreak.txt",
    "é\u0301 ünï.md",
]


def test_odd_file_names_neither_vanish_nor_write_new_versions(tmp_path: Path, encoder) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    for i, name in enumerate(ODD_NAMES):
        (root / name).write_text(f"# Note {i}\n\nDocument number {i} is about the colour of {name!r}.\n")
    store = VectorStore(str(tmp_path / "store"))
    config = _config(root, tmp_path / "store")

    first = run_ingest(config, encoder=encoder, store=store).as_dict()
    assert first["discovered"] == first["chunked_documents"] == len(ODD_NAMES), first["quarantine"]
    versions = len(store.versions())
    manifest = store.manifest("ids")
    assert sorted(entry.relpath for entry in manifest.values()) == sorted(ODD_NAMES)

    for _ in range(2):  # the defect alternated: the file vanished on one run and came back on the next
        again = run_ingest(config, encoder=encoder, store=store).as_dict()
        assert again["parsed_files"] == 0 and again["deleted_documents"] == 0
        assert again["index_version"] == first["index_version"]
        assert again["discovered"] == len(ODD_NAMES)
    assert len(store.versions()) == versions

    from mdp.ids import parse_document_id

    for doc_id, entry in manifest.items():
        assert parse_document_id(doc_id).relpath == entry.relpath


def test_duplicate_jsonl_id_is_quarantined_under_its_own_id(tmp_path: Path, encoder) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    rows = [
        {"_id": "r1", "text": "Glaciers carve valleys."},
        {"_id": "r2", "text": "Espresso is strong coffee."},
        {"_id": "r1", "text": "A second record that claims the id r1."},
        {"_id": "r3", "text": "Volcanoes erupt lava."},
    ]
    (root / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = VectorStore(str(tmp_path / "store"))
    config = _config(root, tmp_path / "store")

    first = run_ingest(config, encoder=encoder, store=store).as_dict()
    assert (first["discovered"], first["chunked_documents"], first["quarantined"]) == (4, 3, 1)
    (dup,) = first["quarantine"]
    assert dup["document_id"] == "ids:rows.jsonl@3"
    assert "duplicate id 'r1'" in dup["reason"] and "line 1" in dup["reason"]
    keys = store.quarantine()["document_id"].tolist() + list(store.manifest("ids"))
    frame = store.manifest_table("ids").to_pandas()
    assert frame["document_id"].is_unique, frame["document_id"].tolist()
    assert len(set(keys)) == 4
    texts = store.chunks_frame(columns=["document_id", "text"])
    r1 = texts[texts["document_id"] == "ids:rows.jsonl#r1"]["text"].tolist()
    assert r1 == ["Glaciers carve valleys."]  # the first record keeps its id

    second = run_ingest(config, encoder=encoder, store=store).as_dict()  # used to fail for good
    assert second["parsed_files"] == 0 and second["index_version"] == first["index_version"]

    rows.append({"_id": "r4", "text": "Tides follow the moon."})
    (root / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    third = run_ingest(config, encoder=encoder, store=store).as_dict()
    assert (third["discovered"], third["chunked_documents"], third["quarantined"]) == (5, 4, 1)


def _doc(doc_id: str, text: str, file_hash: str = "") -> ChunkedDocument:
    document = Document(
        id=doc_id,
        source="src",
        uri="file:///data/x",
        path="/data/x",
        external_id="x",
        content_hash="a" * 64,
        format="text",
    )
    chunk = Chunk(id=Chunk.make_id(doc_id, 0), document_id=doc_id, text=text, position=0, token_count=3)
    return ChunkedDocument(document, [chunk], file_hash)


def test_apply_refuses_duplicate_keys_before_writing_anything(tmp_path: Path) -> None:
    store = VectorStore(str(tmp_path / "store"))
    first = _doc("src:x", "first text", file_hash="f" * 64)
    vector = np.ones(4, dtype=np.float32) / 2
    store.apply("src", [first], model_id="m", model_version="1", vectors={first.chunks[0].text_hash: vector})
    before = (store.version(), store.manifest(), len(store.versions()))
    record = QuarantineRecord(source="src", path="/data/x", reason="line 3: bad", stage="parse")
    for upserts, quarantined in (
        ([_doc("src:y", "one"), _doc("src:y", "two")], []),
        (
            [_doc("src:z", "three")],
            [QuarantinedDocument(record.model_copy(update={"document_id": "src:z"}), "f" * 64)],
        ),
        ([], [QuarantinedDocument(record.model_copy(update={"document_id": "src:q"}), "")] * 2),
    ):
        vectors = {c.text_hash: vector for d in upserts for c in d.chunks}
        with pytest.raises(ValueError, match="more than once"):
            store.apply("src", upserts, quarantined, model_id="m", model_version="1", vectors=vectors)
        assert (store.version(), store.manifest(), len(store.versions())) == before
