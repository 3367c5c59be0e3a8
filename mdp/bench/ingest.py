"""Ingest benchmark: pages/s of mdp's parallel ``process_files`` against a plain loop.

Both sides run on the same text PDFs from ../shared/data/pdfs, in the same run, each in a
fresh interpreter, twice over the files: the first pass is the cold start, the second the
steady state of a long run. ``ratio`` compares the steady state; ``cold_ratio`` the first pass.

- ``loop``: a fresh Python process imports unstructured and calls ``partition_pdf`` on each
  file in turn (what a script would do); its time includes the import.
- ``parallel``: a fresh Python process runs ``mdp.isolation.process_files`` with one worker
  per core; its time includes imports, worker start-up, the encryption/scan checks,
  chunking and token counting. It runs twice: with mdp's default ``[parsing]
  sentence_splitter = "senter"`` (``ratio``) and with unstructured's own choice, spaCy's
  parser (``ratio_parser_splitter``: what parallel workers alone buy).

The two alternate (one round with ``quick``, two otherwise) and each side keeps its best
time, so load from other processes on a shared machine hurts neither side alone.

PDFs that unstructured's complexity heuristic flags are left out: the plain loop returns
nothing for them in a fraction of a second, which would flatter it.

``fidelity_*`` keys: all 55 shared PDFs through ``process_files`` with the default config (no
passwords, as ``mdp ingest ../shared/data/pdfs --include '*.pdf'`` runs): documents by the
extractor most of their pages came from, pages and documents read by OCR, quarantine reasons by
kind, and chunks holding a ``(cid:N)`` run or U+FFFD (must be 0).
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PDF_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "pdfs"

_LOOP = r"""
import json, os, sys, time
started = time.perf_counter()
os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")
from unstructured.partition.pdf import partition_pdf
imported = time.perf_counter()
elements = 0
for path in sys.argv[1:]:
    elements += len(partition_pdf(filename=path, strategy="fast", languages=["eng"]))
done = time.perf_counter()
for path in sys.argv[1:]:  # a second pass, warm: the steady state of a long run
    partition_pdf(filename=path, strategy="fast", languages=["eng"])
warm = time.perf_counter() - done
print(json.dumps({"seconds": done - started, "import_seconds": imported - started, "elements": elements,
                  "warm_seconds": warm}))
"""


def bench_files(quick: bool = False) -> list[tuple[Path, int]]:
    """Text PDFs (no password, no read error, a text layer) with their page counts."""
    manifest = PDF_DIR / "MANIFEST.tsv"
    if not manifest.exists():
        raise FileNotFoundError(
            f"ingest benchmark needs the shared PDFs at {PDF_DIR} (MANIFEST.tsv beside them); absent here"
        )
    from unstructured.partition.pdf import is_pdf_too_complex

    chosen: list[tuple[Path, int]] = []
    with manifest.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            path = PDF_DIR / row["file"]
            chars = int(row["pypdf_text_chars_first20p"] or 0)
            if (
                row["pypdf_encrypted"] == "False"
                and not row["pypdf_error"]
                and row["pypdf_pages"].isdigit()
                and chars >= 200
                and "broken" not in row["category"]
                and path.exists()
                and not is_pdf_too_complex(filename=str(path))
            ):
                chosen.append((path, int(row["pypdf_pages"])))
    chosen.sort(key=lambda item: item[0].name)
    if quick:
        chosen = sorted(chosen, key=lambda item: item[0].stat().st_size)[:8]
    return chosen


def _child(code: str, paths: list[Path], *args: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter (cold imports) and read its last stdout line as JSON."""
    env = {
        **os.environ,
        "UNSTRUCTURED_DISABLE_NOTICE": "1",
        "DO_NOT_TRACK": "true",
        "SCARF_NO_ANALYTICS": "true",
    }
    done = subprocess.run(
        [sys.executable, "-c", code, *args, *map(str, paths)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({done.returncode}): {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


_PARALLEL = r"""
import json, sys, time
from pathlib import Path
if __name__ == "__main__":
    from mdp.bench.ingest import run_parallel
    print(json.dumps(run_parallel([Path(p) for p in sys.argv[2:]], sys.argv[1])))
"""


def run_parallel(paths: list[Path], sentence_splitter: str = "senter") -> dict[str, Any]:
    """mdp's side, timed from before its imports (call it in a fresh process)."""
    started = time.perf_counter()
    from mdp.config import MdpConfig, ParsingConfig, SourceConfig
    from mdp.isolation import process_files, worker_count
    from mdp.sources import discover

    source = SourceConfig(name="bench", root=PDF_DIR, include=[p.name for p in paths])
    parsing = ParsingConfig(timeout_s=900, sentence_splitter=sentence_splitter)  # type: ignore[arg-type]
    config = MdpConfig(sources=[source], parsing=parsing)
    files = discover(source, config.parsing).files
    chunks = quarantined = 0
    for outcome in process_files(files, config):
        chunks += outcome.chunk_count
        quarantined += len(outcome.quarantine)
    cold = time.perf_counter() - started
    warm_started = time.perf_counter()  # a second pass, warm: the steady state of a long run
    for _ in process_files(files, config):
        pass
    return {
        "seconds": cold,
        "warm_seconds": time.perf_counter() - warm_started,
        "chunks": chunks,
        "quarantined": quarantined,
        "workers": worker_count(config.parsing, len(files)),
    }


_GARBAGE = re.compile(r"\(cid:\d+\)|\ufffd")


def _reason_kind(reason: str) -> str:
    """A quarantine reason without its particulars: the words before the first ':' or ' ('."""
    return re.split(r":| \(| —", reason, maxsplit=1)[0].strip()


def run_fidelity() -> dict[str, Any]:
    """Every shared PDF through the parse workers with the default config; what became of it."""
    from collections import Counter

    from mdp.config import MdpConfig, SourceConfig
    from mdp.isolation import process_files
    from mdp.sources import discover

    source = SourceConfig(name="fidelity", root=PDF_DIR, include=["*.pdf"])
    config = MdpConfig(sources=[source])
    files = discover(source, config.parsing).files
    by_extractor: Counter[str] = Counter()
    mixed = ocr_documents = ocr_pages = chunks = garbage = 0
    reasons: Counter[str] = Counter()
    chunked = quarantined = 0
    for outcome in process_files(files, config):
        for chunked_document in outcome.documents:
            document, document_chunks = chunked_document.document, chunked_document.chunks
            chunked += 1
            by_extractor[str(document.metadata.get("extractor", "?"))] += 1
            mixed += "extractor_pages" in document.metadata
            pages = document.metadata.get("ocr_pages")
            if isinstance(pages, list) and pages:
                ocr_documents += 1
                ocr_pages += len(pages)
            chunks += len(document_chunks)
            garbage += sum(1 for c in document_chunks if _GARBAGE.search(c.text))
        for record in outcome.quarantine:
            quarantined += 1
            reasons[_reason_kind(record.reason)] += 1
    return {
        "fidelity_pdfs": len(files),
        "fidelity_chunked": chunked,
        "fidelity_quarantined": quarantined,
        "fidelity_by_extractor": dict(by_extractor.most_common()),
        "fidelity_mixed_extractors": mixed,
        "fidelity_ocr_documents": ocr_documents,
        "fidelity_ocr_pages": ocr_pages,
        "fidelity_quarantine": dict(reasons.most_common()),
        "fidelity_chunks": chunks,
        "fidelity_garbage_chunks": garbage,
    }


def run_ingest_bench(quick: bool = False) -> dict[str, Any]:
    """Alternate cold runs of both sides (1 round quick, 2 full) and keep each side's best."""
    files = bench_files(quick)
    if not files:
        raise RuntimeError(f"no text PDFs selected from {PDF_DIR}")
    paths = [p for p, _ in files]
    pages = sum(n for _, n in files)
    loops: list[dict[str, Any]] = []
    parallels: list[dict[str, Any]] = []
    same_heuristics: list[dict[str, Any]] = []
    for _ in range(1 if quick else 2):
        loops.append(_child(_LOOP, paths))
        parallels.append(_child(_PARALLEL, paths, "senter"))
        same_heuristics.append(_child(_PARALLEL, paths, "parser"))
    loop = min(loops, key=lambda r: r["seconds"])
    parallel = min(parallels, key=lambda r: r["seconds"])
    loop_rate = pages / loop["seconds"]
    parallel_rate = pages / parallel["seconds"]
    warm_loop = pages / min(r["warm_seconds"] for r in loops)
    warm_parallel = pages / min(r["warm_seconds"] for r in parallels)
    warm_parser = pages / min(r["warm_seconds"] for r in same_heuristics)
    return {
        # steady state (second pass, imports and worker start-up done): what a long run sees
        "parallel_pages_per_s": round(warm_parallel, 2),
        "loop_pages_per_s": round(warm_loop, 2),
        "ratio": round(warm_parallel / warm_loop, 2),
        # mdp with unstructured's own sentence splitter (the parser): the gain of parallelism alone
        "ratio_parser_splitter": round(warm_parser / warm_loop, 2),
        # cold (first pass from a fresh interpreter): what a one-off run of a few files sees
        "cold_parallel_pages_per_s": round(parallel_rate, 2),
        "cold_loop_pages_per_s": round(loop_rate, 2),
        "cold_ratio": round(parallel_rate / loop_rate, 2),
        "files": len(files),
        "pages": pages,
        "workers": parallel["workers"],
        "rounds": len(loops),
        "parallel_seconds": [round(r["seconds"], 2) for r in parallels],
        "loop_seconds": [round(r["seconds"], 2) for r in loops],
        "loop_import_seconds": round(loop["import_seconds"], 2),
        "chunks": parallel["chunks"],
        "quarantined": parallel["quarantined"],
        "cpu_count": os.cpu_count() or 1,
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        **run_fidelity(),
    }


if __name__ == "__main__":
    print(json.dumps(run_ingest_bench(quick="--quick" in sys.argv), indent=2))
