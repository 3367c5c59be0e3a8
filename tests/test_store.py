"""VectorStore on real LanceDB folders: upsert, change, delete, no-op, time travel, cache, locking."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

from mdp.ids import document_id
from mdp.records import ChunkedDocument, QuarantinedDocument
from mdp.schemas import Chunk, Document, QuarantineRecord, sha256_bytes
from mdp.store import LOCK_NAME, MissingVectorsError, ReadOnlyStoreError, StoreLockedError, VectorStore

DIM = 8
SOURCE = "src"


def make_doc(
    name: str,
    body: str,
    n_chunks: int,
    source: str = SOURCE,
    file_hash: str = "",
    *,
    path: str | None = None,
    tokens: int = 4,
) -> ChunkedDocument:
    doc_id = document_id(source, name)
    document = Document(
        id=doc_id,
        source=source,
        uri=f"file:///data/{name}",
        path=path or f"/data/{name}",
        relpath=name,
        external_id=name,
        content_hash=sha256_bytes(f"{body}|{n_chunks}".encode()),
        format="text",
    )
    chunks = [
        Chunk(
            id=Chunk.make_id(doc_id, p),
            document_id=doc_id,
            text=f"{body} part {p}",
            position=p,
            token_count=tokens,
            pages=[p + 1],
            element_types=["NarrativeText"],
            metadata={"p": p},
        )
        for p in range(n_chunks)
    ]
    return ChunkedDocument(document, chunks, file_hash)


def vectors_of(*docs: ChunkedDocument) -> dict[str, np.ndarray]:
    """A normalised vector per chunk text, derived from its hash (as an encoder would: same text,
    same vector)."""
    out = {}
    for doc in docs:
        for chunk in doc.chunks:
            seed = int(chunk.text_hash[:8], 16)
            vector = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
            out[chunk.text_hash] = vector / np.linalg.norm(vector)
    return out


def chunk_ids(store: VectorStore, version: int | None = None) -> set[str]:
    return set(store.chunks_frame(version, columns=["id"])["id"])


@pytest.fixture
def store(tmp_path: Path) -> VectorStore:
    return VectorStore(str(tmp_path / "store"))


def test_empty_store(store: VectorStore) -> None:
    assert store.version() == 0
    assert store.count_chunks() == 0
    assert store.manifest() == {}
    assert store.versions() == []
    assert store.chunks_frame().empty


def test_upsert_change_delete(store: VectorStore) -> None:
    a, b, c = make_doc("a.txt", "alpha", 3), make_doc("b.txt", "beta", 2), make_doc("c.txt", "gamma", 2)
    r1 = store.apply(
        SOURCE, [a, b, c], run_id="run-1", model_id="m", model_version="1", vectors=vectors_of(a, b, c)
    )
    assert (r1.chunks_written, r1.documents_written, r1.chunks_deleted) == (7, 3, 0)
    assert store.count_chunks() == 7
    schema = store.chunks_arrow(columns=None).schema
    assert schema.field("id").metadata == {b"lance-schema:unenforced-primary-key": b"true"}
    assert schema.field("vector").type.list_size == DIM

    before = store.chunks_frame().set_index("id")
    # change: a shrinks from 3 to 1 chunk with new text; b and c untouched
    a2 = make_doc("a.txt", "alpha v2", 1)
    r2 = store.apply(
        SOURCE, [a2, b, c], run_id="run-2", model_id="m", model_version="1", vectors=vectors_of(a2)
    )
    assert r2.version == r1.version + 1
    assert (r2.chunks_written, r2.chunks_deleted, r2.documents_written) == (1, 2, 1)
    after = store.chunks_frame().set_index("id")
    assert set(after.index) == {
        "src:a.txt::0",
        "src:b.txt::0",
        "src:b.txt::1",
        "src:c.txt::0",
        "src:c.txt::1",
    }
    assert after.loc["src:a.txt::0", "text"] == "alpha v2 part 0"
    for cid in ("src:b.txt::0", "src:b.txt::1", "src:c.txt::0"):
        assert after.loc[cid, "text"] == before.loc[cid, "text"]
        np.testing.assert_array_equal(after.loc[cid, "vector"], before.loc[cid, "vector"])
    assert store.manifest()["src:a.txt"].n_chunks == 1
    assert store.manifest()["src:a.txt"].run_id == "run-2"
    assert store.manifest()["src:b.txt"].run_id == "run-1"

    # delete
    r3 = store.apply(SOURCE, [], [], ["src:b.txt"], run_id="run-3", model_id="m", model_version="1")
    assert (r3.chunks_deleted, r3.documents_deleted) == (2, 1)
    assert chunk_ids(store) == {"src:a.txt::0", "src:c.txt::0", "src:c.txt::1"}
    assert set(store.manifest()) == {"src:a.txt", "src:c.txt"}

    # time travel: every earlier version still reads as it was
    assert chunk_ids(store, r1.version) == set(before.index)
    assert len(chunk_ids(store, r2.version)) == 5
    log = {v.version: v for v in store.versions()}
    assert log[r1.version].run_id == "run-1" and log[r1.version].rows == 7
    assert log[r3.version].run_id == "run-3" and log[r3.version].rows == 3


def test_noop_apply_keeps_version_and_is_idempotent(store: VectorStore) -> None:
    docs = [make_doc("a.txt", "alpha", 2), make_doc("b.txt", "beta", 1)]
    r1 = store.apply(SOURCE, docs, model_id="m", model_version="", vectors=vectors_of(*docs))
    frame1 = store.chunks_frame().sort_values("id").reset_index(drop=True)
    digest = store.manifest_digest()
    r2 = store.apply(SOURCE, docs, [], ["src:never-existed"], model_id="m", model_version="", vectors={})
    assert r2.version == r1.version
    assert not r2.changed
    assert len(store.versions()) == 1
    frame2 = store.chunks_frame().sort_values("id").reset_index(drop=True)
    assert frame1.drop(columns=["vector"]).equals(frame2.drop(columns=["vector"]))
    assert store.manifest_digest() == digest
    # a different model version re-embeds, so it is a change
    r3 = store.apply(SOURCE, docs, model_id="m", model_version="2", vectors=vectors_of(*docs))
    assert r3.version == r1.version + 1
    assert store.count_chunks() == 3


def test_quarantine_and_manifest(store: VectorStore) -> None:
    a = make_doc("a.txt", "alpha", 2, file_hash="f" * 64)
    store.apply(SOURCE, [a], model_id="m", model_version="1", vectors=vectors_of(a))
    assert store.manifest()["src:a.txt"].file_hash == "f" * 64
    record = QuarantineRecord(source=SOURCE, path="/data/a.txt", reason="now unreadable", stage="parse")
    r = store.apply(
        SOURCE, [], [QuarantinedDocument(record, "e" * 64, a.document)], model_id="m", model_version="1"
    )
    assert r.chunks_deleted == 2 and store.count_chunks() == 0
    q = store.quarantine(SOURCE)
    assert list(q["document_id"]) == ["src:a.txt"] and list(q["reason"]) == ["now unreadable"]
    v = store.version()
    again = store.apply(
        SOURCE, [], [QuarantinedDocument(record, "e" * 64, a.document)], model_id="m", model_version="1"
    )
    assert again.version == v and not again.changed
    other = QuarantineRecord(
        source=SOURCE, path="/data/x.pdf", reason="encrypted", stage="parse", document_id="src:x.pdf"
    )
    store.apply(SOURCE, [], [QuarantinedDocument(other, "d" * 64)], model_id="m", model_version="1")
    assert set(store.quarantine()["document_id"]) == {"src:a.txt", "src:x.pdf"}
    assert store.manifest(source="elsewhere") == {}


def test_manifest_digest_is_order_free(tmp_path: Path) -> None:
    docs = [make_doc(f"d{i}.txt", f"body {i}", 1) for i in range(5)]
    s1, s2 = VectorStore(str(tmp_path / "one")), VectorStore(str(tmp_path / "two"))
    s1.apply(SOURCE, docs, model_id="m", model_version="1", vectors=vectors_of(*docs))
    for d in reversed(docs):
        s2.apply(SOURCE, [d], model_id="m", model_version="1", vectors=vectors_of(d))
    assert s1.manifest_digest() == s2.manifest_digest()
    assert s1.manifest_digest(SOURCE) == s1.manifest_digest()


def test_reopen_from_disk(tmp_path: Path) -> None:
    uri = str(tmp_path / "store")
    a = make_doc("a.txt", "alpha", 2)
    VectorStore(uri).apply(SOURCE, [a], run_id="r", model_id="m", model_version="1", vectors=vectors_of(a))
    reopened = VectorStore(uri, read_only=True)
    assert reopened.count_chunks() == 2
    assert reopened.manifest()["src:a.txt"].status == "chunked"
    assert reopened.versions()[0].run_id == "r"
    assert reopened.size_bytes() > 0
    with pytest.raises(ReadOnlyStoreError):
        reopened.apply(SOURCE, [], [], ["src:a.txt"], model_id="m", model_version="1")


def test_embedding_cache_round_trip(tmp_path: Path) -> None:
    uri = str(tmp_path / "store")
    store = VectorStore(uri)
    vectors = np.random.default_rng(1).normal(size=(50, DIM)).astype(np.float32)
    hashes = [f"h{i}" for i in range(50)]
    assert store.get_cached("model-a", hashes) == {}
    assert store.put_cached("model-a", hashes[:30], vectors[:30]) == 30
    assert store.put_cached("model-a", hashes, vectors) == 20  # the first 30 are skipped
    assert store.put_cached("model-b", hashes[:5], vectors[:5] * 2) == 5
    got = VectorStore(uri).get_cached("model-a", hashes + ["missing"])
    assert set(got) == set(hashes)
    np.testing.assert_array_equal(np.stack([got[h] for h in hashes]), vectors)
    np.testing.assert_array_equal(store.get_cached("model-b", ["h1"])["h1"], vectors[1] * 2)


def test_apply_reads_the_written_chunks_vectors_from_the_embedding_cache(store: VectorStore) -> None:
    a, b, c = make_doc("a.txt", "alpha", 2), make_doc("b.txt", "beta", 1), make_doc("c.txt", "gamma", 3)
    store.apply(SOURCE, [a], model_id="m", model_version="1", vectors=vectors_of(a))  # a: not cached
    cached = vectors_of(c)
    store.put_cached("m@1", list(cached), np.stack(list(cached.values())))
    # a is unchanged, so it needs no vector; c's come from the cache under "m@1"
    r = store.apply(SOURCE, [a, c], model_id="m", model_version="1")
    assert (r.chunks_written, r.documents_written) == (3, 1)
    stored = store.chunks_frame(columns=["text_hash", "vector"])
    for text_hash, vector in cached.items():
        row = stored[stored["text_hash"] == text_hash]
        np.testing.assert_array_equal(row["vector"].iloc[0], vector)
    # b has no cached vector (nor does c under another model): refused before anything is written
    before = (store.version(), store.manifest(), len(store.versions()))
    with pytest.raises(MissingVectorsError, match=r"embedding cache \(m@1\).*'src:b.txt' \(1\)"):
        store.apply(SOURCE, [a, b, c], model_id="m", model_version="1")
    with pytest.raises(MissingVectorsError, match=r"3 chunk\(s\) of 1 document\(s\): 'src:c.txt'"):
        store.apply(SOURCE, [c], model_id="m", model_version="2")
    with pytest.raises(MissingVectorsError, match="the vectors passed to apply"):
        store.apply(SOURCE, [b], model_id="m", model_version="1", vectors=vectors_of(a))
    assert (store.version(), store.manifest(), len(store.versions())) == before


def test_apply_refuses_vectors_of_another_dimension(store: VectorStore) -> None:
    a, b = make_doc("a.txt", "alpha", 1), make_doc("b.txt", "beta", 1)
    store.apply(SOURCE, [a], model_id="m", model_version="1", vectors=vectors_of(a))
    short = {h: v[:4] for h, v in vectors_of(b).items()}
    with pytest.raises(ValueError, match="dimension 4 but the store holds dimension 8"):
        store.apply(SOURCE, [b], model_id="m", model_version="1", vectors=short)
    with pytest.raises(ValueError, match=r"different dimensions in one apply: \[4, 8\]"):
        store.apply(SOURCE, [a, b], model_id="m", model_version="2", vectors={**vectors_of(a), **short})
    assert set(store.manifest()) == {"src:a.txt"}


def test_optimize_keeps_data_and_drops_old_versions(store: VectorStore) -> None:
    for i in range(4):
        doc = make_doc(f"d{i}.txt", f"body {i}", 2)
        store.apply(SOURCE, [doc], model_id="m", model_version="1", vectors=vectors_of(doc))
    assert len(store.versions()) == 4
    ids = chunk_ids(store)
    store.optimize(retention_days=0)
    assert chunk_ids(store) == ids
    assert len(store.versions()) == 1


def test_lock_timeout_names_the_lock_file(tmp_path: Path) -> None:
    uri = tmp_path / "store"
    store = VectorStore(str(uri), lock_timeout_s=0.2)
    with (
        FileLock(str(uri / LOCK_NAME)),
        pytest.raises(StoreLockedError, match="store is locked by another writer"),
    ):
        store.apply(SOURCE, [make_doc("a.txt", "alpha", 1)], model_id="m", model_version="1")


def _writer(uri: str, worker: int, rounds: int) -> None:
    store = VectorStore(uri, lock_timeout_s=120)
    for r in range(rounds):
        # both workers write the same documents with their own contents, plus one of their own
        shared = [make_doc(f"shared{i}.txt", f"w{worker} r{r} {i}", 1 + (i + r) % 3) for i in range(6)]
        own = make_doc(f"own{worker}.txt", f"worker {worker} round {r}", 2)
        docs = [*shared, own]
        store.apply(
            SOURCE, docs, run_id=f"w{worker}-r{r}", model_id="m", model_version="1", vectors=vectors_of(*docs)
        )


@pytest.mark.slow
def test_two_processes_applying_concurrently_end_consistent(tmp_path: Path) -> None:
    uri = str(tmp_path / "store")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(uri, w, 3)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
        assert p.exitcode == 0
    store = VectorStore(uri)
    frame = store.chunks_frame(columns=["id", "document_id", "text"])
    assert not frame["id"].duplicated().any()
    manifest = store.manifest()
    assert len(manifest) == 8
    for doc_id, entry in manifest.items():
        rows = frame[frame["document_id"] == doc_id]
        assert len(rows) == entry.n_chunks, doc_id
        # every chunk of a document comes from the same write
        assert rows["text"].str.rsplit(" part ", n=1).str[0].nunique() == 1, doc_id
