"""The pipeline's stages as plain functions.

Each Dagster asset calls exactly one of these, and ``run_ingest`` chains them for
the CLI and for Python users, so the UI, the command line and library calls do
the same work. Work is incremental per source: files whose bytes did not change
since the index's manifest are neither parsed nor embedded again.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from mdp.config import ChunkingConfig, MdpConfig, SourceConfig
from mdp.ids import document_id
from mdp.records import ChunkedDocument, QuarantinedDocument
from mdp.schemas import Chunk, Document, QuarantineRecord, SourceFile
from mdp.sentences import sentences_by_hash

if TYPE_CHECKING:  # heavy imports stay lazy: parse workers must not load MLX or LanceDB
    from mdp.encoder import SentenceEncoder
    from mdp.store import ApplyResult, VectorStore

Progress = Callable[[int, int], None]


# ---------------------------------------------------------------- raw_documents
@dataclass
class DiscoveryPlan:
    """What a run must do for one source: which files changed, which documents vanished."""

    source: str
    files: list[SourceFile]
    to_parse: list[SourceFile]
    unchanged: list[SourceFile]
    refused: list[QuarantineRecord]
    deleted_document_ids: list[str]
    stale_document_ids: dict[str, list[str]] = field(default_factory=dict)  # relpath -> ids before this run

    def summary(self) -> dict[str, int]:
        return {
            "files": len(self.files),
            "to_parse": len(self.to_parse),
            "unchanged": len(self.unchanged),
            "refused": len(self.refused),
            "deleted_documents": len(self.deleted_document_ids),
        }


def discover_stage(
    config: MdpConfig, source: SourceConfig, store: VectorStore, retry_quarantined: bool = False
) -> DiscoveryPlan:
    """Find the source's files, hash them and diff against the index manifest.

    ``retry_quarantined`` re-parses unchanged files whose documents are all quarantined: after a fix
    outside the file (a password added to the map, an OCR strategy turned on, a parser plugin installed).
    """
    from mdp.sources import discover

    found = discover(source, config.parsing)
    manifest = store.manifest(source.name)
    known_hash: dict[str, str] = {}
    ids_by_relpath: dict[str, list[str]] = {}
    chunked_relpaths: set[str] = set()
    for doc_id, entry in manifest.items():
        ids_by_relpath.setdefault(entry.relpath, []).append(doc_id)
        known_hash[entry.relpath] = entry.file_hash
        if entry.status == "chunked":
            chunked_relpaths.add(entry.relpath)

    to_parse: list[SourceFile] = []
    unchanged: list[SourceFile] = []
    for file in found.files:
        retry = retry_quarantined and file.relpath in known_hash and file.relpath not in chunked_relpaths
        if known_hash.get(file.relpath) == file.content_hash and not retry:
            unchanged.append(file)
        else:
            to_parse.append(file)

    present = {f.relpath for f in found.files}
    refused_paths = {r.relpath for r in found.refused}
    deleted = sorted(
        doc_id
        for relpath, ids in ids_by_relpath.items()
        if relpath not in present and relpath not in refused_paths
        for doc_id in ids
    )
    return DiscoveryPlan(
        source=source.name,
        files=found.files,
        to_parse=to_parse,
        unchanged=unchanged,
        refused=found.refused,
        deleted_document_ids=deleted,
        stale_document_ids={f.relpath: ids_by_relpath.get(f.relpath, []) for f in to_parse},
    )


# ---------------------------------------------------------------- parsed_chunks
@dataclass
class ChunkedBatch:
    """Documents with their chunks, and the documents that went to quarantine instead."""

    source: str
    documents: list[tuple[Document, list[Chunk]]]
    quarantine: list[tuple[Document | None, QuarantineRecord, str]]  # (document, why, file hash)
    file_hashes: dict[str, str]  # document id -> containing file's hash

    @property
    def chunk_count(self) -> int:
        return sum(len(chunks) for _, chunks in self.documents)

    @property
    def document_count(self) -> int:
        return len(self.documents) + len(self.quarantine)


@dataclass
class ParsedBatch(ChunkedBatch):
    """Parse results for the files that changed; every input is accounted for."""

    files_parsed: int = 0
    pages: int = 0
    seconds: float = 0.0


def parse_stage(
    config: MdpConfig, source: SourceConfig, plan: DiscoveryPlan, progress: Progress | None = None
) -> ParsedBatch:
    """Parse and chunk the new or changed files in isolated worker processes."""
    from mdp.isolation import process_files

    started = time.perf_counter()
    documents: list[tuple[Document, list[Chunk]]] = []
    quarantine: list[tuple[Document | None, QuarantineRecord, str]] = []
    file_hashes: dict[str, str] = {}
    pages = 0
    for record in plan.refused:
        doc_id = record.document_id or document_id(plan.source, record.relpath)
        record = record.model_copy(update={"document_id": doc_id})
        quarantine.append((None, record, record.content_hash or ""))
        file_hashes[doc_id] = record.content_hash or ""

    tokenizer_dir = config.model.path
    for outcome in process_files(plan.to_parse, config, tokenizer_dir=tokenizer_dir, progress=progress):
        pages += outcome.pages
        for document, chunks in outcome.documents:
            documents.append((document, chunks))
            file_hashes[document.id] = outcome.file.content_hash
        for record in outcome.quarantine:  # the worker gave every record its id (mdp/ids.py)
            doc_id = record.document_id or document_id(plan.source, outcome.file.relpath, line=record.line)
            record = record.model_copy(update={"document_id": doc_id})
            quarantine.append((None, record, outcome.file.content_hash))
            file_hashes[doc_id] = outcome.file.content_hash
    return ParsedBatch(
        source=plan.source,
        documents=documents,
        quarantine=quarantine,
        file_hashes=file_hashes,
        files_parsed=len(plan.to_parse),
        pages=pages,
        seconds=time.perf_counter() - started,
    )


# ------------------------------------------------------------ validated_samples
@dataclass
class ValidatedBatch(ChunkedBatch):
    """Chunks that passed schema validation; rejected documents joined the quarantine."""

    rejected_chunks: int = 0
    duplicate_chunks_dropped: int = 0
    max_tokens: int = 0
    whole_documents: bool = False  # [chunking] strategy = "document": the encoder truncates, by design


def validate_stage(batch: ParsedBatch, chunking: ChunkingConfig) -> ValidatedBatch:
    """Re-validate every chunk against the schema; a document with no valid chunk is quarantined."""
    max_tokens = chunking.max_tokens
    whole_documents = chunking.strategy == "document"
    documents: list[tuple[Document, list[Chunk]]] = []
    quarantine = list(batch.quarantine)
    rejected = 0
    duplicates = 0
    for document, chunks in batch.documents:
        problems: Counter[str] = Counter()
        kept: list[Chunk] = []
        seen_text: set[str] = set()
        try:
            document = Document.model_validate(document.model_dump())
        except ValidationError as exc:
            reason = f"document failed schema validation: {_first_error(exc)}"
            quarantine.append((None, _reject(batch.source, document, reason), batch.file_hashes[document.id]))
            continue
        for chunk in chunks:
            try:
                valid = Chunk.model_validate(chunk.model_dump(exclude={"text_hash"}))
            except ValidationError as exc:
                problems[_first_error(exc)] += 1
                rejected += 1
                continue
            if valid.token_count > max_tokens and not whole_documents:
                problems[f"chunk has {valid.token_count} tokens > limit {max_tokens}"] += 1
                rejected += 1
                continue
            if valid.document_id != document.id:
                problems["chunk belongs to another document"] += 1
                rejected += 1
                continue
            if valid.text_hash in seen_text:  # the same text twice in one document adds nothing
                duplicates += 1
                continue
            seen_text.add(valid.text_hash)
            kept.append(valid)
        if kept:
            documents.append((document, kept))
        else:
            detail = "; ".join(f"{reason} (x{n})" for reason, n in problems.most_common(3)) or "no chunks"
            reason = f"no valid chunk after validation: {detail}"
            quarantine.append(
                (document, _reject(batch.source, document, reason), batch.file_hashes[document.id])
            )
    return ValidatedBatch(
        source=batch.source,
        documents=documents,
        quarantine=quarantine,
        file_hashes=batch.file_hashes,
        rejected_chunks=rejected,
        duplicate_chunks_dropped=duplicates,
        max_tokens=max_tokens,
        whole_documents=whole_documents,
    )


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "value"
    return f"{where}: {err.get('msg', 'invalid')}"


def _reject(source: str, document: Document, reason: str) -> QuarantineRecord:
    return QuarantineRecord(
        source=source,
        path=document.path,
        relpath=document.relpath,
        reason=reason,
        stage="validate",
        format=document.format,
        document_id=document.id,
        content_hash=document.content_hash,
    )


# ------------------------------------------------------------------- embeddings
@dataclass
class EmbeddedBatch:
    source: str
    documents: list[tuple[Document, list[Chunk], np.ndarray]]
    quarantine: list[tuple[Document | None, QuarantineRecord, str]]
    file_hashes: dict[str, str]
    embedded: int  # chunk vectors computed in this run
    cache_hits: int
    seconds: float
    model_id: str
    model_version: str
    dim: int
    encoder_max_tokens: int = 0  # the encoder truncates beyond this; chunks over it would lose text
    truncation_expected: bool = False  # whole documents as passages (the BEIR protocol)
    sentences: int = 0  # distinct sentences with their own vector (beside the chunks')
    sentences_embedded: int = 0  # of which computed in this run

    @property
    def chunk_count(self) -> int:
        return sum(len(chunks) for _, chunks, _ in self.documents)


def _embed_through_cache(
    store: VectorStore, encoder: SentenceEncoder, model_key: str, texts: dict[str, str], progress: bool
) -> tuple[dict[str, np.ndarray], set[str]]:
    """Vectors for ``{text hash: text}``: cached ones reused, the rest encoded and cached.
    Returns the vectors and the hashes that had to be encoded."""
    cached = store.get_cached(model_key, sorted(texts))
    missing = {h: text for h, text in texts.items() if h not in cached}
    if missing:
        vectors = encoder.encode(list(missing.values()), progress=progress)
        fresh = dict(zip(missing.keys(), vectors, strict=True))
        store.put_cached(model_key, list(fresh.keys()), np.stack(list(fresh.values())))
        cached.update(fresh)
    return cached, set(missing)


def backfill_sentence_vectors(store: VectorStore, encoder: SentenceEncoder, progress: bool = False) -> int:
    """Embed the sentences of the latest version's chunks that have no vector yet (an index built
    before sentence vectors existed, or with them off); returns how many were embedded."""
    texts = sentences_by_hash(store.chunks_frame(columns=["text"])["text"].tolist())
    model_key = f"{encoder.model_id}@{encoder.model_version}"
    return len(_embed_through_cache(store, encoder, model_key, texts, progress)[1])


def embed_stage(
    batch: ValidatedBatch,
    encoder: SentenceEncoder,
    store: VectorStore,
    progress: bool = False,
    sentence_vectors: bool = True,
) -> EmbeddedBatch:
    """Embed chunk texts (and, with ``sentence_vectors``, the sentences of multi-sentence chunks),
    reusing cached vectors for text the model has embedded before. Sentence vectors live only in
    the embedding cache, where the Retriever finds them by text (mdp/sentences.py)."""
    model_key = f"{encoder.model_id}@{encoder.model_version}"
    chunks = [chunk for _, doc_chunks in batch.documents for chunk in doc_chunks]
    hashes = [chunk.text_hash for chunk in chunks]
    texts = {chunk.text_hash: chunk.text for chunk in chunks}
    if sentence_vectors:
        texts = {**sentences_by_hash(chunk.text for chunk in chunks), **texts}
    started = time.perf_counter()
    cached, missing = _embed_through_cache(store, encoder, model_key, texts, progress)
    cache_hits = sum(1 for h in hashes if h not in missing)
    seconds = time.perf_counter() - started
    documents = []
    for document, doc_chunks in batch.documents:
        matrix = np.stack([cached[c.text_hash] for c in doc_chunks]).astype(np.float32, copy=False)
        documents.append((document, doc_chunks, matrix))
    return EmbeddedBatch(
        source=batch.source,
        documents=documents,
        quarantine=batch.quarantine,
        file_hashes=batch.file_hashes,
        embedded=len(missing & set(hashes)),
        cache_hits=cache_hits,
        sentences=len(texts) - len(set(hashes)),
        sentences_embedded=len(missing - set(hashes)),
        seconds=seconds,
        model_id=encoder.model_id,
        model_version=encoder.model_version,
        dim=encoder.dim,
        encoder_max_tokens=encoder.max_tokens,
        truncation_expected=batch.whole_documents,
    )


# ----------------------------------------------------------------- vector_index
def index_stage(
    store: VectorStore,
    plan: DiscoveryPlan,
    batch: EmbeddedBatch,
    run_id: str,
    config: MdpConfig | None = None,
) -> ApplyResult:
    """Apply the source's changes to the store in one commit per table; with ``config``, keep the
    search structures in step (ANN index, BM25 base, scalar indexes: mdp/search_index.py)."""
    produced = {doc.id for doc, _, _ in batch.documents} | {
        rec.document_id for _, rec, _ in batch.quarantine if rec.document_id
    }
    vanished_in_changed_files = [
        doc_id for ids in plan.stale_document_ids.values() for doc_id in ids if doc_id not in produced
    ]
    documents: list[ChunkedDocument] = []
    vectors: dict[str, np.ndarray] = {}
    for document, chunks, matrix in batch.documents:
        documents.append(ChunkedDocument(document, chunks, batch.file_hashes.get(document.id, "")))
        vectors.update(zip((c.text_hash for c in chunks), matrix, strict=True))
    result = store.apply(
        plan.source,
        documents,
        [QuarantinedDocument(record, file_hash, d) for d, record, file_hash in batch.quarantine],
        sorted(set(plan.deleted_document_ids) | set(vanished_in_changed_files)),
        model_id=batch.model_id,
        model_version=batch.model_version,
        run_id=run_id,
        vectors=vectors,
    )
    if config is not None:
        search_upkeep(store, config, f"{batch.model_id}@{batch.model_version}")
    return result


def search_upkeep(
    store: VectorStore, config: MdpConfig, model_key: str | None, compacted: bool = False
) -> dict[str, Any]:
    """Bring the search structures up to date after a write or a compaction."""
    from mdp.retrieval import retrieval_config
    from mdp.search_index import maintain

    search = retrieval_config(config)
    return maintain(store, search, model_key if search.sentence_share > 0 else None, compacted=compacted)


# ------------------------------------------------------------------- reporting
@dataclass
class SourceReport:
    source: str
    discovered: int
    chunked_documents: int
    quarantined: int
    chunks: int
    embedded: int
    cache_hits: int
    parsed_files: int
    unchanged_files: int
    deleted_documents: int
    index_version: int | None
    quarantine: list[dict[str, str]]
    by_format: dict[str, dict[str, int]] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage of this run

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


_COUNT_KEYS = ("discovered", "chunked_documents", "quarantined")


def source_totals(store: VectorStore, source: str) -> dict[str, Any]:
    """The source's state after a run, from the manifest: every document is chunked or quarantined.
    Counted in Arrow; only the quarantined documents become Python objects."""
    import pyarrow as pa
    import pyarrow.compute as pc

    data = store.manifest_table(source, ["document_id", "path", "format", "status", "n_chunks", "reason"])
    if not data.num_rows:
        return {
            "discovered": 0,
            "chunked_documents": 0,
            "quarantined": 0,
            "chunks": 0,
            "by_format": {},
            "quarantine": [],
        }
    chunked = pc.equal(data["status"], "chunked")
    formats = pc.fill_null(pc.if_else(pc.equal(data["format"], ""), None, data["format"]), "unknown")
    by_format: dict[str, dict[str, int]] = {}
    groups = pa.table({"format": formats, "chunked": chunked}).group_by(["format", "chunked"])
    for row in groups.aggregate([("chunked", "count")]).to_pylist():  # one row per (format, status)
        counts = by_format.setdefault(row["format"], dict.fromkeys(_COUNT_KEYS, 0))
        counts["discovered"] += row["chunked_count"]
        counts["chunked_documents" if row["chunked"] else "quarantined"] += row["chunked_count"]
    quarantined = data.filter(pc.equal(data["status"], "quarantined")).sort_by("document_id")
    n_chunked = int(pc.sum(chunked.cast("int64")).as_py() or 0)
    return {
        "discovered": data.num_rows,
        "chunked_documents": n_chunked,
        "quarantined": quarantined.num_rows,
        "chunks": int(pc.sum(pc.if_else(chunked, data["n_chunks"], 0)).as_py() or 0),
        "by_format": dict(sorted(by_format.items())),
        "quarantine": [
            {"path": r["path"], "reason": r["reason"], "document_id": r["document_id"]}
            for r in quarantined.select(["path", "reason", "document_id"]).to_pylist()
        ],
    }


@dataclass
class IngestReport:
    run_id: str
    store: str
    sources: list[SourceReport]
    index_version: int | None
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        total = lambda key: sum(getattr(s, key) for s in self.sources)  # noqa: E731
        by_format: dict[str, dict[str, int]] = {}
        for source in self.sources:
            for fmt, counts in source.by_format.items():
                into = by_format.setdefault(fmt, dict.fromkeys(_COUNT_KEYS, 0))
                for key in _COUNT_KEYS:
                    into[key] += counts[key]
        return {
            "run_id": self.run_id,
            "store": self.store,
            "discovered": total("discovered"),
            "chunked_documents": total("chunked_documents"),
            "quarantined": total("quarantined"),
            "chunks": total("chunks"),
            "embedded": total("embedded"),
            "cache_hits": total("cache_hits"),
            "parsed_files": total("parsed_files"),
            "unchanged_files": total("unchanged_files"),
            "deleted_documents": total("deleted_documents"),
            "by_format": dict(sorted(by_format.items())),
            "index_version": self.index_version,
            "stages": {
                stage: round(sum(s.stages.get(stage, 0.0) for s in self.sources), 3)
                for stage in dict.fromkeys(k for s in self.sources for k in s.stages)
            },
            "quarantine": [q for s in self.sources for q in s.quarantine],
            "sources": {s.source: s.as_dict() for s in self.sources},
            "seconds": round(self.seconds, 3),
        }


def new_run_id() -> str:
    return f"cli-{uuid.uuid4().hex[:12]}"


def ingest_source(
    config: MdpConfig,
    source: SourceConfig,
    store: VectorStore,
    encoder: SentenceEncoder,
    run_id: str,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    retry_quarantined: bool = False,
) -> SourceReport:
    """All stages up to the index, for one source."""
    say = log or (lambda _msg: None)
    clock = _StageClock()
    plan = discover_stage(config, source, store, retry_quarantined=retry_quarantined)
    clock.lap("discover")
    say(f"[{source.name}] {plan.summary()}")
    bar = _progress_bar(len(plan.to_parse), f"parse {source.name}") if progress and plan.to_parse else None
    parsed = parse_stage(config, source, plan, progress=bar.update_to if bar else None)
    if bar:
        bar.close()
    clock.lap("parse")
    validated = validate_stage(parsed, config.chunking)
    clock.lap("validate")
    embedded = embed_stage(
        validated, encoder, store, progress=progress, sentence_vectors=config.embeds_sentences()
    )
    clock.lap("embed")
    result = index_stage(store, plan, embedded, run_id, config)
    totals = source_totals(store, source.name)
    clock.lap("index")
    say(f"[{source.name}] stages (s): {clock.seconds}")
    return SourceReport(
        source=source.name,
        discovered=totals["discovered"],
        chunked_documents=totals["chunked_documents"],
        quarantined=totals["quarantined"],
        chunks=totals["chunks"],
        embedded=embedded.embedded,
        cache_hits=embedded.cache_hits,
        parsed_files=parsed.files_parsed,
        unchanged_files=len(plan.unchanged),
        deleted_documents=result.documents_deleted,
        index_version=result.version,
        quarantine=totals["quarantine"],
        by_format=totals["by_format"],
        stages=clock.seconds,
    )


class _StageClock:
    """Wall-clock seconds per stage, for reports ({"parse": 1.234, ...})."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + now - self._last, 3)
        self._last = now


def run_ingest(
    config: MdpConfig,
    sources: Iterable[SourceConfig] | None = None,
    *,
    encoder: SentenceEncoder | None = None,
    store: VectorStore | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    retry_quarantined: bool = False,
) -> IngestReport:
    """Ingest the given (default: all configured) sources into the configured store."""
    from mdp.encoder import SentenceEncoder
    from mdp.store import VectorStore

    started = time.perf_counter()
    store = store or VectorStore.from_config(config.store)
    encoder = encoder or SentenceEncoder.from_config(config.model)
    run_id = new_run_id()
    reports = [
        ingest_source(
            config,
            source,
            store,
            encoder,
            run_id,
            progress=progress,
            log=log,
            retry_quarantined=retry_quarantined,
        )
        for source in (list(sources) if sources is not None else config.sources)
    ]
    return IngestReport(
        run_id=run_id,
        store=config.store.uri,
        sources=reports,
        index_version=store.version(),
        seconds=time.perf_counter() - started,
    )


class _Bar:
    def __init__(self, total: int, desc: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=desc, unit="file", leave=False)

    def update_to(self, done: int, total: int) -> None:
        self._bar.total = total
        self._bar.n = done
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


def _progress_bar(total: int, desc: str) -> _Bar:
    return _Bar(total, desc)


# --------------------------------------------------------------- retrieval_eval
@dataclass
class EvalResult:
    index_version: int | None
    n_queries: int
    strategies: dict[str, dict[str, float]]
    note: str = ""
    queries_source: str = ""

    def markdown(self) -> str:
        if not self.strategies:
            return self.note or "no evaluation"
        metrics = list(next(iter(self.strategies.values())).keys())
        lines = ["| strategy | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
        for strategy, scores in self.strategies.items():
            lines.append(f"| {strategy} | " + " | ".join(f"{scores[m]:.4f}" for m in metrics) + " |")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "index_version": self.index_version,
            "queries": self.n_queries,
            "queries_source": self.queries_source,
            "strategies": self.strategies,
            "note": self.note,
            "table": self.markdown(),
        }


def eval_stage(
    config: MdpConfig,
    store: VectorStore,
    encoder: SentenceEncoder,
    queries: dict[str, str] | None = None,
    qrels: dict[str, dict[str, int]] | None = None,
) -> EvalResult:
    """Score every configured strategy on labelled queries (the configured set unless given)."""
    from mdp.evaluation import evaluate_retriever, load_labelled_queries
    from mdp.retrieval import Retriever, retrieval_config

    version = store.version()
    origin = "given"
    if queries is None or qrels is None:
        path = config.eval.queries
        if path is None or not Path(path).exists():
            note = (
                "no labelled queries: set [eval] queries in mdp.toml to a queries.jsonl "
                "with qrels.tsv beside it"
                if path is None
                else f"labelled queries not found at {path}: run `mdp sample` or fix [eval] queries"
            )
            return EvalResult(version, 0, {}, note=note)
        labelled = load_labelled_queries(path)
        queries, qrels = labelled.queries, labelled.qrels
        origin = str(path)
    if not store.count_chunks():
        return EvalResult(version, len(queries), {}, note="the index is empty: ingest a source first")
    retriever = Retriever(store, encoder, config=retrieval_config(config))
    report = evaluate_retriever(retriever, queries, qrels, config.eval.strategies)
    return EvalResult(version, len(queries), report.strategies, queries_source=origin)


BEIR_PROTOCOLS = ("passages", "pipeline")


def evaluate_beir(
    config: MdpConfig,
    beir_dir: Path,
    protocol: str = "passages",
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Index a BEIR folder's corpus.jsonl through the normal pipeline, then score it on its qrels.

    ``protocol="passages"`` is BEIR's: each document (title and text) is one passage that the
    encoder truncates at its window, so scores compare with published ones. ``"pipeline"`` keeps
    the configured chunking; documents are then ranked by their best chunk.
    """
    if protocol not in BEIR_PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(BEIR_PROTOCOLS)}")
    from mdp.config import JsonlOptions
    from mdp.encoder import SentenceEncoder
    from mdp.evaluation import load_beir
    from mdp.store import VectorStore

    data = load_beir(beir_dir)
    config = config.model_copy(deep=True)
    config.parsing.jsonl = JsonlOptions(id_field="_id", text_fields=["title", "text"], title_field="title")
    if protocol == "passages":
        config.chunking.strategy = "document"
    source = SourceConfig(name=f"beir-{beir_dir.name}", root=beir_dir, include=["corpus.jsonl"])
    clock = _StageClock()
    store = VectorStore.from_config(config.store)
    encoder = SentenceEncoder.from_config(config.model)
    clock.lap("load_encoder")
    ingest = run_ingest(config, [source], encoder=encoder, store=store, progress=progress, log=log)
    clock.lap("ingest")
    if config.embeds_sentences():  # an index from before sentence vectors gets them now
        backfill_sentence_vectors(store, encoder, progress=progress)
    clock.lap("sentence_backfill")
    result = eval_stage(config, store, encoder, queries=data.queries, qrels=data.qrels)
    clock.lap("eval")
    out = result.as_dict()
    out["queries_source"] = str(beir_dir)
    out["protocol"] = protocol
    out["ingest"] = {k: v for k, v in ingest.as_dict().items() if k not in ("quarantine", "sources")}
    out["seconds"] = {**clock.seconds, "total": round(sum(clock.seconds.values()), 3)}
    out["encoder"] = {k: encoder.info()[k] for k in ("device", "gpu_name", "dtype", "device_batch_tokens")}
    return out


def generated_queries(
    store: VectorStore, generate: Callable[[list[tuple[str, str]]], list[Any]]
) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Labelled queries written by a local language model from the index's own chunks.

    Each generated question is judged relevant to the document of the chunk it was written from.
    """
    from mdp.querygen import to_labelled_queries

    frame = store.chunks_frame(columns=["id", "external_id", "text"])
    chunks = list(zip(frame["id"].tolist(), frame["text"].tolist(), strict=True))
    external = dict(zip(frame["id"].tolist(), frame["external_id"].tolist(), strict=True))
    labelled = to_labelled_queries(generate(chunks), external)
    return {q.id: q.text for q in labelled}, {q.id: dict(q.relevant) for q in labelled}
