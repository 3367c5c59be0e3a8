"""Incremental, versioned indexing on a 200-document corpus, through the real `mdp` command line.

Covers: add / change / delete / no-op, SIGKILL in the middle of an index update, and two
concurrent ingests into one store.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a 200-file corpus through the CLI, kill -9 and concurrent runs

N_DOCS = 200
MDP = [sys.executable, "-m", "mdp_cli"]

WORDS = [
    "glacier",
    "river",
    "canyon",
    "desert",
    "forest",
    "meadow",
    "volcano",
    "island",
    "harbour",
    "valley",
    "prairie",
    "tundra",
    "marsh",
    "lagoon",
    "plateau",
    "reef",
    "delta",
    "fjord",
    "savanna",
    "steppe",
    "geyser",
    "canal",
    "orchard",
    "vineyard",
    "quarry",
    "lighthouse",
]


def _text(i: int, rng: random.Random) -> str:
    picked = rng.sample(WORDS, 6)
    return (
        f"Field report {i}. The {picked[0]} near the {picked[1]} was surveyed on day {i % 31 + 1}. "
        f"Observers noted that the {picked[2]} and the {picked[3]} change with the seasons, while the "
        f"{picked[4]} stays stable. Code word: token{i:04d}x. The {picked[5]} closes the report."
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reports") / "reports"
    root.mkdir()
    rng = random.Random(7)
    for i in range(N_DOCS):
        (root / f"report-{i:03d}.txt").write_text(_text(i, rng) + "\n")
    return root


def mdp(*args: str, check: bool = True, env: dict[str, str] | None = None) -> dict:
    out = subprocess.run(
        [*MDP, *args, "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=900,
    )
    if check and out.returncode != 0:
        raise AssertionError(f"mdp {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout) if out.stdout.strip() else {}


def ingest(corpus: Path, store: Path, **kw) -> dict:
    return mdp("ingest", str(corpus), "--store", str(store), **kw)


def search(store: Path, text: str, strategy: str) -> list[str]:
    hits = mdp("query", text, "--store", str(store), "--strategy", strategy, "-k", "5")["hits"]
    return [h["document_id"] for h in hits]


@pytest.fixture(scope="module")
def built(corpus: Path, tmp_path_factory) -> tuple[Path, dict]:
    store = tmp_path_factory.mktemp("store") / "index"
    return store, ingest(corpus, store)


def test_full_build_accounts_for_every_document(built):
    _, report = built
    assert report["discovered"] == N_DOCS
    assert report["chunked_documents"] == N_DOCS and report["quarantined"] == 0
    assert report["embedded"] == report["chunks"] >= N_DOCS


def test_noop_rerun_embeds_nothing_and_keeps_the_version(corpus, built):
    store, first = built
    again = ingest(corpus, store)
    assert again["embedded"] == 0 and again["parsed_files"] == 0
    assert again["index_version"] == first["index_version"]


def test_add_change_delete_touch_only_those_documents(corpus, built):
    store, _ = built
    from mdp.store import VectorStore

    def chunks_by_doc() -> dict[str, list[str]]:
        frame = VectorStore(str(store), read_only=True).chunks_frame(columns=["document_id", "text"])
        out: dict[str, list[str]] = {}
        for doc, text in zip(frame["document_id"], frame["text"], strict=True):
            out.setdefault(doc, []).append(text)
        return out

    before = chunks_by_doc()
    # Add one document: only its chunks are embedded.
    (corpus / "report-new.txt").write_text("A new report about the aurora borealis, code word zzaurora.\n")
    added = ingest(corpus, store)
    after_add = chunks_by_doc()
    new_id = next(d for d in after_add if d.endswith("report-new.txt"))
    assert added["embedded"] == len(after_add[new_id]) == 1
    assert added["discovered"] == N_DOCS + 1

    # Change one document: exactly its chunks are replaced, nothing else moves.
    target = corpus / "report-050.txt"
    target.write_text("Report 50 was rewritten: the observatory measured cosmic rays, code word qqcosmic.\n")
    changed = ingest(corpus, store)
    after_change = chunks_by_doc()
    changed_id = next(d for d in after_change if d.endswith("report-050.txt"))
    assert changed["embedded"] == 1
    assert after_change[changed_id] != before[changed_id] and "qqcosmic" in after_change[changed_id][0]
    assert {d: t for d, t in after_change.items() if d != changed_id} == {
        d: t for d, t in after_add.items() if d != changed_id
    }

    # Delete one document: its chunks vanish from every strategy.
    victim_code = "token0123x"
    victim = next(d for d, texts in after_change.items() if any(victim_code in t for t in texts))
    assert search(store, f"code word {victim_code}", "bm25")[0] == victim
    assert victim in search(store, f"code word {victim_code}", "hybrid")
    assert victim in search(store, after_change[victim][0], "vector")
    (corpus / "report-123.txt").unlink()
    deleted = ingest(corpus, store)
    assert deleted["embedded"] == 0 and deleted["discovered"] == N_DOCS
    for strategy in ("vector", "bm25", "hybrid"):
        assert victim not in search(store, f"code word {victim_code}", strategy)
        assert victim not in search(store, after_change[victim][0], strategy)
    assert victim not in chunks_by_doc()


def _consistent(store: Path) -> tuple[int, int]:
    """Index rows equal the manifest's chunk counts and no chunk id repeats."""
    from mdp.store import VectorStore

    db = VectorStore(str(store), read_only=True)
    frame = db.chunks_frame(columns=["id", "document_id"])
    manifest = db.manifest()
    expected = sum(e.n_chunks for e in manifest.values() if e.status == "chunked")
    assert not frame["id"].duplicated().any()
    assert len(frame) == expected, (len(frame), expected)
    return len(frame), len(manifest)


def test_sigkill_mid_update_leaves_a_readable_index_that_the_next_run_completes(corpus, tmp_path):
    from mdp.store import VectorStore

    store = tmp_path / "index"
    ingest(corpus, store)
    committed = VectorStore(str(store), read_only=True).version()
    for path in sorted(corpus.glob("report-1*.txt"))[:60]:
        path.write_text(path.read_text().replace("Field report", "Revised field report"))

    # Killed between the chunks commit and the manifest commit: the worst moment.
    env = {"MDP_FAULT_POINT": "after_chunks_commit"}
    proc = subprocess.Popen(
        [*MDP, "ingest", str(corpus), "--store", str(store), "--json"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == -signal.SIGKILL, err[-2000:]
    db = VectorStore(str(store), read_only=True)
    assert db.version() > committed  # the chunks commit landed, the manifest did not
    assert db.count_chunks() > 0 and len(db.chunks_frame(columns=["id"])) == db.count_chunks()

    # Killed at an arbitrary moment of another update.
    for path in sorted(corpus.glob("report-0*.txt"))[:40]:
        path.write_text(path.read_text() + " Addendum.\n")
    proc = subprocess.Popen(
        [*MDP, "ingest", str(corpus), "--store", str(store), "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(4)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    readable = VectorStore(str(store), read_only=True)
    assert readable.count_chunks() == len(readable.chunks_frame(columns=["id"]))

    final = ingest(corpus, store)
    assert final["discovered"] == final["chunked_documents"] == len(list(corpus.glob("*.txt")))
    _consistent(store)
    texts = VectorStore(str(store), read_only=True).chunks_frame(columns=["text"])["text"]
    assert sum("Revised field report" in t for t in texts) == 60
    assert sum("Addendum." in t for t in texts) == 40
    assert ingest(corpus, store)["embedded"] == 0


def test_two_concurrent_ingests_into_one_store_end_consistent(corpus, tmp_path):
    store = tmp_path / "index"
    other = tmp_path / "other"
    other.mkdir()
    for i in range(30):
        (other / f"memo-{i}.md").write_text(
            f"# Memo {i}\n\nMemo {i} concerns the harbour budget line {i * 7}.\n"
        )
    procs = [
        subprocess.Popen(
            [*MDP, "ingest", str(path), "--store", str(store), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path in (corpus, other, corpus)
    ]
    outputs = [p.communicate(timeout=900) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-2000:]
    rows, documents = _consistent(store)
    assert documents == len(list(corpus.glob("*.txt"))) + 30
    assert mdp("ingest", str(corpus), "--store", str(store))["embedded"] == 0
