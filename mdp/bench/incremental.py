"""Incremental indexing: the cost of a one-document change and of a no-op, as shares of a full build.

The corpus is SciFact's 5,183 abstracts written as one text file each (when ../shared is present),
else a synthetic corpus of the same shape; ``quick`` uses 500 documents. Everything runs in this
process on the same files: the full build is the baseline.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from mdp.bench import shared_data_dir
from mdp.config import MdpConfig, SourceConfig


def _documents(limit: int | None) -> tuple[list[tuple[str, str]], str]:
    corpus = shared_data_dir() / "scifact" / "corpus.jsonl"
    if corpus.exists():
        docs = []
        with corpus.open() as fh:
            for line in fh:
                row = json.loads(line)
                docs.append((row["_id"], f"{row.get('title', '')}\n\n{row.get('text', '')}".strip()))
        return (docs[:limit] if limit else docs), "scifact"
    rng = random.Random(0)
    words = [
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
    ]
    n = limit or 5183
    docs = [(f"d{i}", " ".join(rng.choice(words) for _ in range(180)) + f" marker{i}") for i in range(n)]
    return docs, "synthetic"


def _timed_ingest(config: MdpConfig, source: SourceConfig, encoder: Any, store: Any) -> tuple[float, dict]:
    from mdp.stages import run_ingest

    started = time.perf_counter()
    report = run_ingest(config, [source], encoder=encoder, store=store).as_dict()
    return time.perf_counter() - started, report


def run_incremental_bench(quick: bool = False) -> dict[str, Any]:
    from mdp.encoder import SentenceEncoder
    from mdp.store import VectorStore

    docs, origin = _documents(500 if quick else None)
    encoder = SentenceEncoder()
    with tempfile.TemporaryDirectory(prefix="mdp-bench-incr-") as tmp:
        root = Path(tmp) / "corpus"
        root.mkdir()
        for doc_id, text in docs:
            (root / f"{doc_id}.txt").write_text(text + "\n")
        config = MdpConfig()
        config.store.uri = str(Path(tmp) / "store")
        source = SourceConfig(name="bench", root=root, include=["*.txt"])
        store = VectorStore(config.store.uri)

        full_s, full = _timed_ingest(config, source, encoder, store)
        target = root / f"{docs[len(docs) // 2][0]}.txt"
        target.write_text(target.read_text() + "\nThis abstract was revised to add one sentence.\n")
        change_s, change = _timed_ingest(config, source, encoder, store)
        noop_s, noop = _timed_ingest(config, source, encoder, store)

    return {
        "corpus": origin,
        "documents": len(docs),
        "chunks": full["chunks"],
        "full_build_s": round(full_s, 2),
        "one_change_s": round(change_s, 3),
        "one_change_share": round(change_s / full_s, 4),
        "one_change_embedded": change["embedded"],
        "noop_s": round(noop_s, 3),
        "noop_share": round(noop_s / full_s, 4),
        "noop_embedded": noop["embedded"],
        "noop_version_unchanged": noop["index_version"] == change["index_version"],
        "target_share": 0.03,
    }
