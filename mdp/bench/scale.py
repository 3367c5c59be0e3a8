"""A million chunks on one machine: build, open, query, update and ingest at scale.

``mdp bench --only scale [--chunks N]`` (1M chunks by default, 100k with ``--quick``). The corpus is
SciFact's sentences recombined into chunk-sized passages with vectors mixed from their real MiniLM
embeddings (mdp/bench/scale_corpus.py says how), written through ``VectorStore.apply`` as documents
of 10 chunks, plus a small folder source ingested through the real pipeline (MLX encoder). Each
measurement runs in its own child process, so that its memory is its own:

- ``build``: writing the chunks, the search upkeep (ANN index, BM25 base, scalar indexes): time and
  peak RSS;
- ``serve`` (once per ANN index type): cold open to the first hybrid answer, p50/p95 per strategy
  (query embedding excluded: SciFact's claims, embedded once), RSS while serving, then vector
  recall@10 and hybrid top-10 overlap against the exact path on a sample of the queries;
- ``update``: one changed document of the folder source, end to end (discover, parse, embed,
  commit, search upkeep, and a serving Retriever that finds the new text);
- ``ingest``: 1,000 new documents through ``run_ingest`` into the large store: time and peak RSS.

Run one role by hand: ``python -m mdp.bench.scale <role> <workdir> <json options>``.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from mdp.bench import shared_data_dir
from mdp.bench.scale_corpus import CACHE_DIR, load_sentence_bank, neighbour_docs, passages

CHUNKS_PER_DOC = 10
WRITE_BATCH_DOCS = 2_000
LIVE_DOCS = 50
NEW_DOCS = 1_000
PASSAGES_PER_NEW_DOC = 1
REUSE_ENV = "MDP_SCALE_REUSE"  # development only: keep the work folder and skip roles already done
QUERIES = 200
RECALL_QUERIES = 100
ANN_TYPES = ("ivf_pq", "ivf_hnsw_sq")
SOURCE = "scale"


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2)


def _retrieval(ann: str, mode: str = "auto", **overrides: Any) -> Any:
    from mdp.config import RetrievalConfig

    return RetrievalConfig(ann_index=ann, vector_search=mode, sentence_share=0.0, **overrides)  # type: ignore[arg-type]


def _bank() -> Any:
    return load_sentence_bank(shared_data_dir() / "scifact")


# ------------------------------------------------------------------ roles (each in its own process)
def role_build(work: Path, opts: dict[str, Any]) -> dict[str, Any]:
    from mdp.records import text_document
    from mdp.schemas import text_hash
    from mdp.search_index import build_base
    from mdp.store import VectorStore

    n = int(opts["chunks"])
    bank = _bank()
    neighbours = neighbour_docs(bank)
    store = VectorStore(work / "store")
    started = time.perf_counter()
    per_batch = WRITE_BATCH_DOCS * CHUNKS_PER_DOC
    for start in range(0, n, per_batch):
        count = min(per_batch, n - start)
        texts, vectors, _ = passages(bank, start, count, neighbours)
        documents = []
        for d in range(0, count, CHUNKS_PER_DOC):
            number = (start + d) // CHUNKS_PER_DOC
            documents.append(text_document(SOURCE, f"doc{number}.txt", texts[d : d + CHUNKS_PER_DOC]))
        by_hash = dict(zip((text_hash(t) for t in texts), vectors, strict=True))
        store.apply(
            SOURCE,
            documents,
            model_id="scale-mixture",
            model_version="1",
            run_id="scale-build",
            vectors=by_hash,
        )
        print(f"scale build: {start + count:,}/{n:,} chunks", file=sys.stderr, flush=True)
    write_s = time.perf_counter() - started
    t0 = time.perf_counter()
    store.ensure_scalar_indexes()
    scalar_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    build_base(
        store, store.version(), _retrieval(ANN_TYPES[0]), log=lambda m: print(m, file=sys.stderr, flush=True)
    )
    base_s = time.perf_counter() - t0
    return {
        "write_s": round(write_s, 1),
        "scalar_indexes_s": round(scalar_s, 1),
        "bm25_base_s": round(base_s, 1),
        "build_s": round(time.perf_counter() - started, 1),
        "build_peak_rss_mb": round(_peak_rss_mb()),
        "store_mb": round(store.size_bytes() / 1e6),
    }


def role_index(work: Path, opts: dict[str, Any]) -> dict[str, Any]:
    """Train one ANN index type over the whole table (replacing the other)."""
    from mdp.search_index import build_vector_index
    from mdp.store import VectorStore

    store = VectorStore(work / "store")
    started = time.perf_counter()
    build_vector_index(store, _retrieval(opts["ann"], "approximate"))
    return {"index_s": round(time.perf_counter() - started, 1), "index_peak_rss_mb": round(_peak_rss_mb())}


def role_serve(work: Path, opts: dict[str, Any]) -> dict[str, Any]:
    """Cold open, latency, serving RSS; then recall against the exact path (after RSS is taken)."""
    from mdp.retrieval import Retriever
    from mdp.store import VectorStore

    ann, mode = opts["ann"], opts["mode"]
    queries = json.loads((work / "queries.json").read_text())
    qv = np.load(work / "query_vectors.npy")
    rss_before = _rss_mb()
    t0 = time.perf_counter()
    store = VectorStore(work / "store", read_only=True)
    retriever = Retriever(store, config=_retrieval(ann, mode, **opts.get("overrides", {})))
    first = retriever.search_vectors(queries[:1], qv[:1], "hybrid", k=10)[0]
    open_s = time.perf_counter() - t0
    assert first, "no hit for the first query"
    info = retriever.describe()
    times: dict[str, list[float]] = {"vector": [], "bm25": [], "hybrid": []}
    for i in range(1, min(len(queries), QUERIES + 1)):
        for strategy, values in times.items():
            s = time.perf_counter()
            retriever.search_vectors([queries[i]], qv[i : i + 1], strategy, k=10)
            values.append((time.perf_counter() - s) * 1000)
    serve_rss = _rss_mb()
    out: dict[str, Any] = {
        "load_avg_1m": round(os.getloadavg()[0], 1),  # the machine is shared: how busy it was
        "open_s": round(open_s, 2),
        "search": info,
        "serve_rss_mb": round(serve_rss),
        "rss_before_open_mb": round(rss_before),
    }
    for strategy, values in times.items():
        out[f"{strategy}_p50_ms"] = _pct(values, 50)
        out[f"{strategy}_p95_ms"] = _pct(values, 95)
    # how busy the shared machine was: the exact product over 100k x 384 took 5.8 ms on an idle one
    from mdp.retrieval import _matvec

    reference = np.random.default_rng(0).normal(size=(100_000, qv.shape[1])).astype(np.float32)
    ref_times = []
    for i in range(30):
        s = time.perf_counter()
        _matvec(reference, qv[i])
        ref_times.append((time.perf_counter() - s) * 1000)
    out["reference_matvec_100k_ms"] = _pct(ref_times, 50)
    del reference
    exact = Retriever(store, config=_retrieval(ann, "exact"))
    recall = overlap = 0
    sample = range(1, RECALL_QUERIES + 1)
    for i in sample:
        args = ([queries[i]], qv[i : i + 1])
        approx_v = {h.chunk_id for h in retriever.search_vectors(*args, "vector", k=10)[0]}
        exact_v = {h.chunk_id for h in exact.search_vectors(*args, "vector", k=10)[0]}
        approx_h = {h.chunk_id for h in retriever.search_vectors(*args, "hybrid", k=10)[0]}
        exact_h = {h.chunk_id for h in exact.search_vectors(*args, "hybrid", k=10)[0]}
        recall += len(approx_v & exact_v)
        overlap += len(approx_h & exact_h)
    out["vector_recall_at_10"] = round(recall / (10 * len(sample)), 4)
    out["hybrid_top10_overlap"] = round(overlap / (10 * len(sample)), 4)
    return out


def _live_config(work: Path, folder: str) -> Any:
    from mdp.config import MdpConfig, SourceConfig

    config = MdpConfig()
    config.store.uri = str(work / "store")
    config.sources = [SourceConfig(name=folder.replace("_", "-"), root=work / folder, include=["*.txt"])]
    return config


def _write_docs(folder: Path, first: int, count: int, seed: int) -> None:
    """Documents of one passage each, from the same generator (another seed: new texts)."""
    bank = _bank()
    neighbours = neighbour_docs(bank)
    folder.mkdir(parents=True, exist_ok=True)
    per = PASSAGES_PER_NEW_DOC
    texts, _, _ = passages(bank, first * per, count * per, neighbours, seed=seed)
    for i in range(count):
        (folder / f"doc{first + i}.txt").write_text("\n\n".join(texts[per * i : per * (i + 1)]) + "\n")


def role_update(work: Path, opts: dict[str, Any]) -> dict[str, Any]:
    """One changed document, end to end, with a serving Retriever following the latest version."""
    from mdp.encoder import SentenceEncoder
    from mdp.retrieval import Retriever
    from mdp.stages import run_ingest
    from mdp.store import VectorStore

    config = _live_config(work, "live")
    _write_docs(work / "live", 0, LIVE_DOCS, seed=7)
    encoder = SentenceEncoder()
    store = VectorStore(config.store.uri)
    t0 = time.perf_counter()
    run_ingest(config, encoder=encoder, store=store)
    first_ingest_s = time.perf_counter() - t0
    retriever = Retriever(store, encoder, config=_retrieval(opts["ann"]))
    retriever.search("warm up", "hybrid")
    parse_times: list[float] = []  # how much of an update is parsing (the report's stage clock)
    marker = "zyxwvutsrq"  # a word no SciFact passage has
    target = work / "live" / "doc3.txt"
    times = []
    for attempt in range(3):
        word = f"{marker}{attempt}"
        target.write_text(target.read_text() + f"\nRevision {attempt} mentions {word} once.\n")
        started = time.perf_counter()
        report = run_ingest(config, encoder=encoder, store=store).as_dict()
        parse_times.append(report["stages"].get("parse", 0.0))
        retriever.refresh()
        hits = retriever.search(word, "bm25", k=3)
        times.append(time.perf_counter() - started)
        if not hits or not hits[0].document_id.endswith("doc3.txt"):
            raise RuntimeError(f"the changed document is not found after the update: {hits}")
        if report["chunked_documents"] < LIVE_DOCS:
            raise RuntimeError(f"the live source lost documents: {report}")
    parse = parse_times[-len(times) :]
    return {
        "update_s": round(float(np.median(times)), 3),
        "update_parse_s": round(float(np.median(parse)), 3),
        "update_without_parse_s": round(float(np.median(np.array(times) - np.array(parse))), 3),
        "update_runs_s": [round(t, 3) for t in times],
        "live_first_ingest_s": round(first_ingest_s, 1),
        "search_after_update": retriever.describe(),
    }


def role_ingest(work: Path, opts: dict[str, Any]) -> dict[str, Any]:
    """1,000 new documents into the large store, through the pipeline; peak RSS of this process."""
    from mdp.stages import run_ingest

    stamp = int(time.time())  # new texts every run: a rerun must embed and write, not find them cached
    folder = f"new_docs_{stamp}"
    config = _live_config(work, folder)
    _write_docs(work / folder, 10_000, NEW_DOCS, seed=stamp)
    rss_start = _rss_mb()
    started = time.perf_counter()
    report = run_ingest(config).as_dict()
    return {
        "ingest_s": round(time.perf_counter() - started, 1),
        "ingest_rss_mb": round(_peak_rss_mb()),
        # parse workers (forked, reaped): the largest one's peak; they never open the store
        "parse_worker_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "ingest_rss_start_mb": round(rss_start),
        "ingest_documents": report["chunked_documents"],
        "ingest_chunks": report["chunks"],
    }


ROLES = {
    "build": role_build,
    "index": role_index,
    "serve": role_serve,
    "update": role_update,
    "ingest": role_ingest,
}


def _child(role: str, work: Path, opts: dict[str, Any], log: Any) -> dict[str, Any]:
    done = work / f"{role}-{'-'.join(str(v) for v in opts.values())}.json"
    if os.environ.get(REUSE_ENV) and done.exists():
        log(f"scale: {role} {opts} reused from {done} ({REUSE_ENV} is set)")
        return {**json.loads(done.read_text()), "reused": True}
    log(f"scale: {role} {opts} ...")
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "mdp.bench.scale", role, str(work), json.dumps(opts)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"scale benchmark role {role} failed (exit {proc.returncode}); see its stderr above"
        )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    done.write_text(json.dumps(result))
    log(f"scale: {role} done in {time.perf_counter() - started:.0f} s: {result}")
    return result


def run_scale_bench(quick: bool = False, chunks: int | None = None, log: Any = print) -> dict[str, Any]:
    from mdp.config import RetrievalConfig
    from mdp.search_index import vector_mode

    n = int(chunks or (100_000 if quick else 1_000_000))
    bank = _bank()  # embeds SciFact's sentences once (cached under var/scale/)
    work = CACHE_DIR / f"run-{n}"
    reuse = bool(os.environ.get(REUSE_ENV))
    if not reuse:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    try:
        (work / "queries.json").write_text(json.dumps(bank.queries))
        np.save(work / "query_vectors.npy", bank.query_vectors)
        build = _child("build", work, {"chunks": n}, log)
        default_ann = RetrievalConfig().ann_index
        auto_mode = vector_mode(RetrievalConfig(), n)
        serve: dict[str, dict[str, Any]] = {}
        # both index types up to 200k chunks; above, the default only (each build takes many minutes)
        types = ANN_TYPES if n <= 200_000 else (default_ann,)
        for ann in sorted(types, key=lambda a: a == default_ann):  # the default last: it stays
            build[f"{ann}_index"] = _child("index", work, {"ann": ann}, log)
            serve[f"approximate_{ann}"] = _child("serve", work, {"ann": ann, "mode": "approximate"}, log)
        if auto_mode == "exact":
            serve["exact"] = _child("serve", work, {"ann": default_ann, "mode": "auto"}, log)
        update = _child("update", work, {"ann": default_ann}, log)
        ingest = _child("ingest", work, {}, log)
    finally:
        if not reuse:
            shutil.rmtree(work, ignore_errors=True)
    main = serve["exact" if auto_mode == "exact" else f"approximate_{default_ann}"]
    result: dict[str, Any] = {
        "chunks": n,
        "vectors": "mixtures of real MiniLM (MLX) embeddings of SciFact sentences + N(0, 0.01) noise",
        "vector_search": main["search"]["vector_search"],
        "ann_index": default_ann if auto_mode == "approximate" else None,
        "open_s": main["open_s"],
        "hybrid_p50_ms": main["hybrid_p50_ms"],
        "hybrid_p95_ms": main["hybrid_p95_ms"],
        "vector_p50_ms": main["vector_p50_ms"],
        "vector_p95_ms": main["vector_p95_ms"],
        "bm25_p50_ms": main["bm25_p50_ms"],
        "bm25_p95_ms": main["bm25_p95_ms"],
        "vector_recall_at_10": main["vector_recall_at_10"],
        "hybrid_top10_overlap": main["hybrid_top10_overlap"],
        "serve_rss_mb": main["serve_rss_mb"],
        "update_s": update["update_s"],
        "update_parse_s": update["update_parse_s"],
        "update_without_parse_s": update["update_without_parse_s"],
        "ingest_rss_mb": ingest["ingest_rss_mb"],
        "ingest_s": ingest["ingest_s"],
        "build_s": build["build_s"],
        "build_peak_rss_mb": build["build_peak_rss_mb"],
        "store_mb": build["store_mb"],
        "build": build,
        "serve": serve,
        "update": update,
        "ingest": ingest,
    }
    return result


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    role, work, opts = args[0], Path(args[1]), json.loads(args[2]) if len(args) > 2 else {}
    os.nice(0)
    result = ROLES[role](work, opts)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
