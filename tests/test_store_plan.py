"""The pure half of VectorStore.apply: which manifest rows, chunks and deletes a write makes, from
the manifest entries of the touched documents and the incoming records. No LanceDB here: the
old manifest of each case is what an earlier plan wrote."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from test_store import make_doc

from mdp.records import ChunkedDocument, QuarantinedDocument
from mdp.schemas import QuarantineRecord
from mdp.store import DOCUMENTS_SCHEMA, ApplyPlan, ManifestEntry, MissingVectorsError, plan_apply, unchanged
from mdp.store.chunks import chunk_rows
from mdp.store.manifest import entries_from_arrow, entries_to_arrow
from mdp.store.plan import check_records, touched_ids

SOURCE = "src"
NOW = datetime(2026, 1, 2, tzinfo=UTC)
RUN = {"source": SOURCE, "model_id": "m", "model_version": "1", "run_id": "run-1", "now": NOW}


def doc(name: str = "a.txt", body: str = "alpha", n_chunks: int = 2, **change: Any) -> ChunkedDocument:
    """A chunked document (test_store's); ``change`` sets the file hash, token counts or path."""
    return make_doc(name, body, n_chunks, file_hash=change.pop("file_hash", "f" * 64), **change)


def quarantined(
    name: str = "a.txt", reason: str = "unreadable", file_hash: str = "e" * 64
) -> QuarantinedDocument:
    record = QuarantineRecord(
        source=SOURCE,
        path=f"/data/{name}",
        relpath=name,
        reason=reason,
        stage="parse",
        document_id=f"{SOURCE}:{name}",
        content_hash="c" * 64,
    )
    return QuarantinedDocument(record, file_hash)


def plan(
    manifest: dict[str, ManifestEntry],
    documents: list[ChunkedDocument] = (),  # type: ignore[assignment]
    quarantine: list[QuarantinedDocument] = (),  # type: ignore[assignment]
    deleted: list[str] = (),  # type: ignore[assignment]
    **run: Any,
) -> ApplyPlan:
    return plan_apply(manifest, documents, quarantine, deleted, **{**RUN, **run})


def written(*items: ChunkedDocument | QuarantinedDocument, **run: Any) -> dict[str, ManifestEntry]:
    """The manifest after an earlier write of ``items`` into an empty store."""
    docs = [i for i in items if isinstance(i, ChunkedDocument)]
    quarantine = [i for i in items if isinstance(i, QuarantinedDocument)]
    return {row.document_id: row for row in plan({}, docs, quarantine, **run).rows}


def summary(p: ApplyPlan) -> tuple[list[str], list[str], list[str], list[str], int]:
    return (
        [r.document_id for r in p.rows],
        [d.document_id for d in p.chunk_parts],
        list(p.replace_ids),
        list(p.deleted_ids),
        p.chunks_written,
    )


A = f"{SOURCE}:a.txt"


@pytest.mark.parametrize(
    ("old", "new", "run", "expected"),
    [
        pytest.param(None, doc(), {}, ([A], [A], [A], [], 2), id="new document"),
        pytest.param(doc(), doc(), {}, ([], [], [], [], 0), id="unchanged"),
        pytest.param(doc(), doc(), {"run_id": "run-2"}, ([], [], [], [], 0), id="another run, same"),
        pytest.param(doc(), doc(body="alpha v2"), {}, ([A], [A], [A], [], 2), id="content changed"),
        pytest.param(doc(), doc(n_chunks=1), {}, ([A], [A], [A], [], 1), id="fewer chunks"),
        pytest.param(doc(), doc(tokens=5), {}, ([A], [A], [A], [], 2), id="chunking changed"),
        pytest.param(doc(), doc(file_hash="0" * 64), {}, ([A], [A], [A], [], 2), id="file changed"),
        pytest.param(doc(), doc(), {"model_version": "2"}, ([A], [A], [A], [], 2), id="model version"),
        pytest.param(doc(), doc(), {"model_id": "other"}, ([A], [A], [A], [], 2), id="model id"),
        pytest.param(quarantined(), doc(), {}, ([A], [A], [A], [], 2), id="was quarantined"),
        pytest.param(doc(), doc(n_chunks=0), {}, ([A], [], [A], [], 0), id="no chunks left"),
    ],
)
def test_chunked_document(
    old: ChunkedDocument | QuarantinedDocument | None,
    new: ChunkedDocument,
    run: dict[str, Any],
    expected: tuple[Any, ...],
) -> None:
    manifest = written(old) if old is not None else {}
    p = plan(manifest, [new], **run)
    assert summary(p) == expected
    assert p.empty == (not expected[0])
    if p.rows:
        row = p.rows[0]
        assert (row.status, row.n_chunks, row.run_id) == (
            "chunked",
            len(new.chunks),
            run.get("run_id", "run-1"),
        )
        assert row.file_hash == new.file_hash and row.chunks_digest


@pytest.mark.parametrize(
    ("old", "new", "run", "expected"),
    [
        pytest.param(None, quarantined(), {}, ([A], [], [], [], 0), id="new quarantine"),
        pytest.param(doc(), quarantined(), {}, ([A], [], [A], [], 0), id="chunked, now quarantined"),
        pytest.param(doc(n_chunks=0), quarantined(), {}, ([A], [], [], [], 0), id="had no chunks"),
        pytest.param(quarantined(), quarantined(), {}, ([], [], [], [], 0), id="unchanged"),
        pytest.param(
            quarantined(), quarantined(), {"model_version": "2"}, ([], [], [], [], 0), id="new model"
        ),
        pytest.param(quarantined(), quarantined(reason="bad"), {}, ([A], [], [], [], 0), id="other reason"),
        pytest.param(quarantined(), quarantined(file_hash="0" * 64), {}, ([A], [], [], [], 0), id="file"),
    ],
)
def test_quarantined_document(
    old: ChunkedDocument | QuarantinedDocument | None,
    new: QuarantinedDocument,
    run: dict[str, Any],
    expected: tuple[Any, ...],
) -> None:
    manifest = written(old) if old is not None else {}
    p = plan(manifest, quarantine=[new], **run)
    assert summary(p) == expected
    if p.rows:
        row = p.rows[0]
        assert (row.status, row.n_chunks, row.reason, row.stage) == (
            "quarantined",
            0,
            new.record.reason,
            "parse",
        )
        assert (row.file_hash, row.content_hash, row.chunks_digest) == (new.file_hash, "c" * 64, "")


B = f"{SOURCE}:b.txt"


@pytest.mark.parametrize(
    ("documents", "deleted", "expected"),
    [
        pytest.param([], [B], ([], [], [B], [B], 0), id="chunked document deleted"),
        pytest.param([], [B, B], ([], [], [B], [B], 0), id="deleted twice"),
        pytest.param([], [f"{SOURCE}:never.txt"], ([], [], [], [], 0), id="unknown id"),
        pytest.param([doc("b.txt", "beta v2")], [B], ([B], [B], [B], [], 2), id="deleted and written"),
        pytest.param([doc("b.txt", "beta")], [B], ([], [], [], [], 0), id="deleted, sent unchanged"),
        pytest.param([], [f"{SOURCE}:q.txt"], ([], [], [], [f"{SOURCE}:q.txt"], 0), id="quarantined deleted"),
    ],
)
def test_deletes(documents: list[ChunkedDocument], deleted: list[str], expected: tuple[Any, ...]) -> None:
    manifest = written(doc("a.txt"), doc("b.txt", "beta"), quarantined("q.txt"))
    assert summary(plan(manifest, documents, deleted=deleted)) == expected


def test_a_batch_plans_each_document_once_and_counts_add_up() -> None:
    manifest = written(doc("a.txt"), doc("b.txt", "beta"), doc("c.txt", "gamma", 3))
    p = plan(
        manifest,
        [doc("a.txt"), doc("b.txt", "beta v2", 1), doc("d.txt", "delta", 2)],
        [quarantined("c.txt")],
        [f"{SOURCE}:a.txt"],  # a is written unchanged, so it stays
    )
    assert summary(p) == (
        [B, f"{SOURCE}:d.txt", f"{SOURCE}:c.txt"],
        [B, f"{SOURCE}:d.txt"],
        [B, f"{SOURCE}:d.txt", f"{SOURCE}:c.txt"],
        [],
        3,
    )
    assert p.text_hashes() == [c.text_hash for d in p.chunk_parts for c in d.chunks]


def test_rows_hold_storable_text_and_fall_back_to_the_content_hash() -> None:
    item = doc("x.txt", path="/data/caf\udce9.txt", file_hash="")
    (row,) = plan({}, [item]).rows
    assert row.path == "/data/caf\\udce9.txt"  # Arrow strings are UTF-8; the raw bytes are spelled out
    assert row.file_hash == item.document.content_hash  # a document that is its own file
    assert (row.model_id, row.model_version, row.run_id, row.updated_at) == ("m", "1", "run-1", NOW)


def test_manifest_rows_round_trip_through_arrow() -> None:
    rows = [
        *plan({}, [doc("we%ird\udcff.txt")]).rows,
        *plan({}, quarantine=[quarantined("q.txt")]).rows,
    ]
    data = entries_to_arrow(rows)
    assert data.schema == DOCUMENTS_SCHEMA
    assert data["relpath"].to_pylist()[0] == "we%25ird%FF.txt"  # stored escaped (mdp.ids)
    assert list(entries_from_arrow(data).values()) == rows


def test_the_documents_schema_is_derived_from_the_manifest_row() -> None:
    names = list(ManifestEntry.__dataclass_fields__)
    assert DOCUMENTS_SCHEMA.names == names
    key = DOCUMENTS_SCHEMA.field("document_id")
    assert not key.nullable and key.metadata == {b"lance-schema:unenforced-primary-key": b"true"}
    assert DOCUMENTS_SCHEMA.field("line").type == pa.int32()
    assert DOCUMENTS_SCHEMA.field("updated_at").type == pa.timestamp("us", tz="UTC")


@pytest.mark.parametrize(
    ("field", "value", "status", "skipped"),
    [
        ("run_id", "other", "chunked", True),
        ("updated_at", datetime(2030, 1, 1, tzinfo=UTC), "chunked", True),
        ("content_hash", "0" * 64, "chunked", False),
        ("file_hash", "0" * 64, "chunked", False),
        ("chunks_digest", "0" * 64, "chunked", False),
        ("model_id", "other", "chunked", False),
        ("model_version", "2", "chunked", False),
        ("status", "quarantined", "chunked", False),
        ("model_version", "2", "quarantined", True),
        ("reason", "another reason", "quarantined", False),
        ("content_hash", "0" * 64, "quarantined", False),
        ("file_hash", "0" * 64, "quarantined", False),
    ],
)
def test_the_skip_rule(field: str, value: Any, status: str, skipped: bool) -> None:
    old = next(iter(written(doc() if status == "chunked" else quarantined()).values()))
    assert unchanged(old, old) and not unchanged(None, old)
    assert unchanged(old, ManifestEntry(**{**old.__dict__, field: value})) is skipped


@pytest.mark.parametrize(
    ("documents", "quarantine", "message"),
    [
        ([doc(), doc(body="again")], [], "appear more than once"),
        ([doc()], [quarantined()], "appear more than once"),
        ([], [quarantined(), quarantined(reason="x")], "appear more than once"),
        ([ChunkedDocument(doc().document.model_copy(update={"source": "other"}))], [], "belongs to source"),
        ([ChunkedDocument(doc().document, doc("b.txt").chunks)], [], "does not belong to document"),
    ],
)
def test_records_the_store_cannot_write_are_refused(
    documents: list[ChunkedDocument], quarantine: list[QuarantinedDocument], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        check_records(SOURCE, documents, quarantine)


def test_touched_ids_cover_every_record_once() -> None:
    ids = touched_ids([doc("a.txt"), doc("b.txt")], [quarantined("q.txt")], [B, f"{SOURCE}:gone.txt"])
    assert ids == [A, B, f"{SOURCE}:q.txt", f"{SOURCE}:gone.txt"]


def test_only_the_chunks_written_need_vectors_and_missing_ones_are_named() -> None:
    manifest = written(doc("a.txt"))
    p = plan(manifest, [doc("a.txt"), doc("b.txt", "beta", 3)])
    hashes = p.text_hashes()  # a is unchanged: only b's three chunks are written
    assert hashes == [c.text_hash for c in doc("b.txt", "beta", 3).chunks]
    vectors = {h: np.full(4, i, dtype=np.float32) for i, h in enumerate(hashes)}
    rows = chunk_rows(p.chunk_parts, vectors, "test")
    assert rows["text_hash"].to_pylist() == hashes and rows["document_id"].to_pylist() == [B] * 3
    assert rows["vector"].to_pylist() == [[float(i)] * 4 for i in range(3)]
    with pytest.raises(
        MissingVectorsError, match=r"no vector in the cache for 1 chunk\(s\) of 1 .*'src:b.txt'"
    ):
        chunk_rows(p.chunk_parts, dict(list(vectors.items())[1:]), "the cache")
    with pytest.raises(ValueError, match=r"different dimensions in one apply: \[3, 4\]"):
        chunk_rows(p.chunk_parts, {**vectors, hashes[0]: np.zeros(3)}, "test")


def test_the_plan_imports_no_lancedb() -> None:
    code = "import sys, mdp.store.plan; assert 'lancedb' not in sys.modules, 'lancedb was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
