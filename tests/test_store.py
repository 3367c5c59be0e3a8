"""VectorStore on real LanceDB folders: upsert, change, delete, no-op, time travel, cache, locking."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

from mdp.schemas import Chunk, Document, QuarantineRecord, sha256_bytes
from mdp.store import LOCK_NAME, ReadOnlyStoreError, StoreLockedError, VectorStore

DIM = 8
SOURCE = "src"


def make_doc(
    name: str, body: str, n_chunks: int, source: str = SOURCE
) -> tuple[Document, list[Chunk], np.ndarray]:
    doc_id = f"{source}:{name}"
    document = Document(
        id=doc_id,
        source=source,
        uri=f"file:///data/{name}",
        path=f"/data/{name}",
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
            token_count=4,
            pages=[p + 1],
            element_types=["NarrativeText"],
            metadata={"p": p},
        )
        for p in range(n_chunks)
    ]
    seed = int.from_bytes(sha256_bytes(f"{name}{body}".encode()).encode()[:4], "little")
    vectors = np.random.default_rng(seed).normal(size=(n_chunks, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return document, chunks, vectors


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
    r1 = store.apply(SOURCE, [a, b, c], [], [], run_id="run-1", model_id="m", model_version="1")
    assert (r1.chunks_written, r1.documents_written, r1.chunks_deleted) == (7, 3, 0)
    assert store.count_chunks() == 7
    schema = store.chunks_arrow(columns=None).schema
    assert schema.field("id").metadata == {b"lance-schema:unenforced-primary-key": b"true"}
    assert schema.field("vector").type.list_size == DIM

    before = store.chunks_frame().set_index("id")
    # change: a shrinks from 3 to 1 chunk with new text; b and c untouched
    a2 = make_doc("a.txt", "alpha v2", 1)
    r2 = store.apply(SOURCE, [a2, b, c], [], [], run_id="run-2", model_id="m", model_version="1")
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
    r3 = store.apply(SOURCE, [], [], ["src:b.txt"], run_id="run-3")
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
    r1 = store.apply(SOURCE, docs, [], [], model_id="m")
    frame1 = store.chunks_frame().sort_values("id").reset_index(drop=True)
    digest = store.manifest_digest()
    r2 = store.apply(SOURCE, docs, [], ["src:never-existed"], model_id="m")
    assert r2.version == r1.version
    assert not r2.changed
    assert len(store.versions()) == 1
    frame2 = store.chunks_frame().sort_values("id").reset_index(drop=True)
    assert frame1.drop(columns=["vector"]).equals(frame2.drop(columns=["vector"]))
    assert store.manifest_digest() == digest
    # a different model version re-embeds, so it is a change
    r3 = store.apply(SOURCE, docs, [], [], model_id="m", model_version="2")
    assert r3.version == r1.version + 1
    assert store.count_chunks() == 3


def test_quarantine_and_manifest(store: VectorStore) -> None:
    a = make_doc("a.txt", "alpha", 2)
    store.apply(SOURCE, [a], [], [], file_hashes={"src:a.txt": "f" * 64})
    assert store.manifest()["src:a.txt"].file_hash == "f" * 64
    record = QuarantineRecord(source=SOURCE, path="/data/a.txt", reason="now unreadable", stage="parse")
    r = store.apply(SOURCE, [], [(a[0], record, "e" * 64)], [])
    assert r.chunks_deleted == 2 and store.count_chunks() == 0
    q = store.quarantine(SOURCE)
    assert list(q["document_id"]) == ["src:a.txt"] and list(q["reason"]) == ["now unreadable"]
    v = store.version()
    again = store.apply(SOURCE, [], [(a[0], record, "e" * 64)], [])
    assert again.version == v and not again.changed
    other = QuarantineRecord(
        source=SOURCE, path="/data/x.pdf", reason="encrypted", stage="parse", document_id="src:x.pdf"
    )
    store.apply(SOURCE, [], [(None, other, "d" * 64)], [])
    assert set(store.quarantine()["document_id"]) == {"src:a.txt", "src:x.pdf"}
    assert store.manifest(source="elsewhere") == {}


def test_manifest_digest_is_order_free(tmp_path: Path) -> None:
    docs = [make_doc(f"d{i}.txt", f"body {i}", 1) for i in range(5)]
    s1, s2 = VectorStore(str(tmp_path / "one")), VectorStore(str(tmp_path / "two"))
    s1.apply(SOURCE, docs, [], [])
    for d in reversed(docs):
        s2.apply(SOURCE, [d], [], [])
    assert s1.manifest_digest() == s2.manifest_digest()
    assert s1.manifest_digest(SOURCE) == s1.manifest_digest()


def test_reopen_from_disk(tmp_path: Path) -> None:
    uri = str(tmp_path / "store")
    VectorStore(uri).apply(SOURCE, [make_doc("a.txt", "alpha", 2)], [], [], run_id="r")
    reopened = VectorStore(uri, read_only=True)
    assert reopened.count_chunks() == 2
    assert reopened.manifest()["src:a.txt"].status == "chunked"
    assert reopened.versions()[0].run_id == "r"
    assert reopened.size_bytes() > 0
    with pytest.raises(ReadOnlyStoreError):
        reopened.apply(SOURCE, [], [], ["src:a.txt"])


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


def test_optimize_keeps_data_and_drops_old_versions(store: VectorStore) -> None:
    for i in range(4):
        store.apply(SOURCE, [make_doc(f"d{i}.txt", f"body {i}", 2)], [], [])
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
        store.apply(SOURCE, [make_doc("a.txt", "alpha", 1)], [], [])


def _writer(uri: str, worker: int, rounds: int) -> None:
    store = VectorStore(uri, lock_timeout_s=120)
    for r in range(rounds):
        # both workers write the same documents with their own contents, plus one of their own
        shared = [make_doc(f"shared{i}.txt", f"w{worker} r{r} {i}", 1 + (i + r) % 3) for i in range(6)]
        own = make_doc(f"own{worker}.txt", f"worker {worker} round {r}", 2)
        store.apply(SOURCE, [*shared, own], [], [], run_id=f"w{worker}-r{r}")


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
