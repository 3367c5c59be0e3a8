"""Project configuration: sources, parsing budgets, chunking, model, store, eval.

Read from a TOML file (``mdp.toml`` by default, ``MDP_CONFIG`` overrides). Every
relative path in it is resolved against the file's folder, so the same config
works from the CLI, from Python and from the Dagster UI.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_NAME = "mdp.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(_Strict):
    """A configured root. Only files under ``root`` are ever read."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$", description="Partition key; letters, digits, _ . -")
    root: Path
    include: list[str] = Field(default_factory=lambda: ["**/*"], description="Glob patterns relative to root")
    exclude: list[str] = Field(default_factory=list)

    @field_validator("include")
    @classmethod
    def _some_pattern(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("include needs at least one glob pattern, e.g. ['**/*']")
        return value


class JsonlOptions(_Strict):
    id_field: str = "_id"
    text_fields: list[str] = Field(default_factory=lambda: ["title", "text"])
    metadata_fields: list[str] | None = Field(
        default=None, description="Fields copied to metadata; None copies every field that is not text or id"
    )
    title_field: str | None = "title"


class ParsingConfig(_Strict):
    pdf_strategy: Literal["fast", "auto", "hi_res", "ocr_only"] = "fast"
    timeout_s: float = Field(default=60.0, gt=0, description="Per-document wall-clock budget")
    memory_mb: int = Field(default=2048, gt=64, description="Per-worker address-space budget")
    max_file_mb: float = Field(default=200.0, gt=0, description="Larger files are quarantined unread")
    workers: int = Field(default=0, ge=0, description="Parse worker processes; 0 means one per core")
    passwords: dict[str, str] = Field(
        default_factory=dict, description="PDF passwords by file name or glob relative to the source root"
    )
    jsonl: JsonlOptions = Field(default_factory=JsonlOptions)
    languages: list[str] = Field(
        default_factory=lambda: ["eng"],
        description="Tesseract language codes for OCR (and unstructured's hints), e.g. ['eng', 'deu']",
    )
    ocr: bool = Field(
        default=True,
        description="OCR image-only and unreadable PDF pages with Tesseract when it is installed "
        '(pdf_strategy "fast"); within the per-document timeout_s',
    )
    ocr_dpi: int = Field(default=200, ge=72, le=600, description="Resolution pages are rendered at for OCR")
    ocr_min_confidence: float = Field(
        default=50.0,
        ge=0,
        le=100,
        description="Tesseract's mean word confidence below which a page's OCR is discarded",
    )
    min_text_fidelity: float = Field(
        default=0.9,
        ge=0,
        le=1,
        description="Text scoring below this is garbage (unmapped glyphs, mojibake, implausible scripts): "
        "another extractor is tried, else the page or document is left out with a reason",
    )
    sentence_splitter: Literal["senter", "parser"] = Field(
        default="senter",
        description="spaCy pipeline behind unstructured's title/narrative heuristics: "
        '"senter" is ~10 % faster per PDF, "parser" is unstructured\'s own choice',
    )


class ChunkingConfig(_Strict):
    strategy: Literal["by_title", "basic", "document"] = Field(
        default="by_title",
        description='"document" keeps each document whole as one passage, which the encoder truncates '
        "at its window (the BEIR protocol, used by `mdp eval --beir --protocol passages`)",
    )
    max_tokens: int = Field(default=256, ge=8, description="Hard limit, counted with the encoder's tokenizer")
    target_tokens: int = Field(default=200, ge=8, description="Soft size chunks aim for")
    overlap_tokens: int = Field(default=0, ge=0)
    combine_under_chars: int = 200


class ModelConfig(_Strict):
    path: Path | None = Field(
        default=None, description="sentence-transformers folder; None = all-MiniLM-L6-v2"
    )
    device: Literal["auto", "cpu", "gpu"] = Field(
        default="auto",
        description='MLX device: "auto" takes the GPU when MLX has one (CUDA via `make setup-cuda`, or '
        'Metal), else the CPU; "gpu" fails with the fix when there is none',
    )
    batch_tokens: int | None = Field(
        default=None,
        ge=256,
        description="Padded tokens per encoder batch; None: the device's default (1,024 on a CPU, where "
        "batches must stay in cache, which also caps larger values; 65,536 on a GPU)",
    )
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        default="float32",
        description="Compute precision. A reduced one is used only if every text of a real-text parity "
        "check stays at cosine >= 0.999 against float32 (else float32, with the reason in the metadata); "
        "on a CPU it is slower, not faster",
    )
    query_prompt: str | None = Field(
        default=None,
        description="Text put before every query; None: the model folder's config_sentence_transformers.json "
        'prompts ("query", or default_prompt_name\'s), "" for none',
    )
    document_prompt: str | None = Field(
        default=None,
        description="Text put before every chunk and sentence; None: the folder's prompts "
        '("document", "passage" or "corpus", or default_prompt_name\'s), "" for none',
    )
    sentence_vectors: bool | None = Field(
        default=None,
        description="Also embed every sentence of multi-sentence chunks, so that hybrid search scores a "
        "chunk's best sentence beside the chunk itself. None (default): on for [chunking] strategy = "
        '"document" (whole passages, where it helps), off for chunked corpora (where it did not); '
        "docs/retrieval.md",
    )


class StoreConfig(_Strict):
    uri: str = Field(default="var/store", description="Folder, or s3:// gs:// az:// URI")
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="Object-store settings passed to LanceDB, e.g. aws_endpoint, aws_region, allow_http; "
        "values like ${ENV_VAR} are read from the environment",
    )

    retention_days: float = Field(
        default=7.0, ge=0, description="Nightly compaction keeps index versions younger than this"
    )

    def resolved_storage_options(self) -> dict[str, str]:
        return {k: os.path.expandvars(v) for k, v in self.storage_options.items()}


class EvalConfig(_Strict):
    queries: Path | None = Field(default=None, description="queries.jsonl; qrels.tsv beside it")
    strategies: list[str] = Field(default_factory=lambda: ["vector", "bm25", "hybrid"])
    primary: str = "hybrid"
    k: int = 10
    regression_metric: str = "ndcg@10"
    regression_margin: float = Field(
        default=0.02, ge=0, description="How far the primary strategy may fall below the last accepted run"
    )


class QualityConfig(_Strict):
    quarantine_warn_rate: float = Field(
        default=0.2, ge=0, le=1, description="Share of a source quarantined: warn"
    )
    quarantine_error_rate: float = Field(default=0.5, ge=0, le=1, description="... and error")
    max_replacement_char_rate: float = Field(
        default=0.01, ge=0, le=1, description="U+FFFD or control characters per character before a warning"
    )
    min_chunk_tokens: int = Field(default=8, ge=1, description="Chunks shorter than this count as fragments")
    max_fragment_rate: float = Field(default=0.25, ge=0, le=1)
    near_duplicate_cosine: float = Field(default=0.98, gt=0, le=1)


class RetrievalConfig(_Strict):
    """``[retrieval]``: search settings; the defaults are the documented label-free choices
    (docs/retrieval.md)."""

    fusion: Literal["rrf", "weighted"] = Field(default="weighted", description="What 'hybrid' means")
    rrf_k: float = Field(default=60.0, gt=0, description="RRF constant (Cormack et al. 2009)")
    vector_weight: float = Field(default=0.5, ge=0)
    bm25_weight: float = Field(default=0.5, ge=0)
    candidate_depth: int = Field(
        default=100, ge=1, description="Candidates taken from each list before fusion"
    )
    sentence_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Hybrid: share of the dense weight given to a candidate chunk's best sentence (needs "
        "sentence vectors at ingest, see [model] sentence_vectors); the rest goes to the chunk's own "
        "vector. 0 = off",
    )
    sentence_exact_limit: int = Field(
        default=100_000,
        ge=0,
        description="Up to this many sentence vectors, the best-sentence list is an exact search over all "
        "of them, like the other lists; above, only the vector and BM25 candidates are scored",
    )
    bm25_k1: float = Field(default=1.5, gt=0)
    bm25_b: float = Field(default=0.75, ge=0, le=1)
    bm25_method: Literal["lucene", "robertson", "atire", "bm25l", "bm25+"] = "lucene"
    stemmer: str | None = Field(default="english", description="Snowball language, or None for no stemming")
    stopwords: bool = True
    refresh_interval_s: float = Field(
        default=1.0, ge=0, description="How often a search on the latest version checks for a new one"
    )
    vector_search: Literal["auto", "exact", "approximate"] = Field(
        default="auto",
        description='"auto": exact up to approximate_above chunks, LanceDB\'s ANN index above; or force one',
    )
    approximate_above: int = Field(
        default=250_000, ge=0, description="Chunks above which auto vector search uses the ANN index"
    )
    ann_index: Literal["ivf_pq", "ivf_hnsw_sq"] = Field(
        default="ivf_hnsw_sq", description="LanceDB ANN index type (docs/retrieval.md compares both)"
    )
    ann_nprobes: int = Field(default=20, ge=1, description="IVF partitions probed per query")
    ann_refine_factor: int = Field(
        default=5, ge=1, description="ANN candidates per result re-ranked exactly from the stored vectors"
    )
    ann_ef: int = Field(
        default=400, ge=1, description="HNSW search breadth (ivf_hnsw_sq); at least depth x refine_factor"
    )
    ann_sub_vectors: int = Field(default=48, ge=1, description="PQ sub-vectors (ivf_pq); must divide the dim")
    delta_rebuild_rows: int = Field(
        default=50_000,
        ge=0,
        description="Rows changed since the search index's base above which it is rebuilt "
        "(mdp/search_index.py)",
    )


class MdpConfig(_Strict):
    sources: list[SourceConfig] = Field(default_factory=list)
    parsing: ParsingConfig = Field(default_factory=ParsingConfig)
    chunking: ChunkingConfig = Field(default_factory=ChunkingConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)

    def embeds_sentences(self) -> bool:
        """Whether ingest embeds sentences and search uses them (``[model] sentence_vectors``)."""
        if self.model.sentence_vectors is not None:
            return self.model.sentence_vectors
        return self.chunking.strategy == "document"

    def source(self, name: str) -> SourceConfig:
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources) or "none"
        raise KeyError(f"no source named {name!r} in the config (configured: {known})")

    def resolved(self, base: Path) -> MdpConfig:
        """Copy with relative paths made absolute against ``base``."""

        def absolute(p: Path | None) -> Path | None:
            if p is None:
                return None
            p = Path(os.path.expanduser(str(p)))
            return p if p.is_absolute() else (base / p).resolve()

        data = self.model_copy(deep=True)
        for source in data.sources:
            source.root = absolute(source.root)  # type: ignore[assignment]
        data.model.path = absolute(data.model.path)
        data.eval.queries = absolute(data.eval.queries)
        if "://" not in data.store.uri:
            data.store.uri = str(absolute(Path(data.store.uri)))
        return data


def config_path() -> Path:
    env = os.environ.get("MDP_CONFIG")
    return Path(env).resolve() if env else PROJECT_ROOT / DEFAULT_CONFIG_NAME


_LOADED: dict[tuple[str, bytes], MdpConfig] = {}


def load_config(path: str | Path | None = None) -> MdpConfig:
    """Load and validate a config file; errors name the file and the field.

    A file is parsed and validated once per process (and again only when its bytes change); every
    call returns its own copy, so a caller that adjusts its config (the CLI's --store, a password)
    changes nobody else's.
    """
    file = Path(path).resolve() if path else config_path()
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"config file {file} not found: create it (see docs/configuration.md) or set MDP_CONFIG"
        ) from None
    key = (str(file), data)
    config = _LOADED.get(key)
    if config is None:
        config = _parse_config(file, data)
        _LOADED.clear()  # one file version per process is what every caller wants
        _LOADED[key] = config
    return config.model_copy(deep=True)


def _parse_config(file: Path, data: bytes) -> MdpConfig:
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{file}: invalid TOML: {exc}") from exc
    try:
        config = MdpConfig.model_validate(raw)
    except ValidationError as exc:  # `from None`: pydantic's own text would echo the values
        problems = describe_validation_error(exc)
        raise ValueError(f"{file}: invalid mdp config: {problems} (see docs/configuration.md)") from None
    return config.resolved(file.parent)


def describe_validation_error(exc: ValidationError) -> str:
    """Each problem as ``field: message`` on one line; never the value (it may be a password)."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(part) for part in error.get("loc", ())) or "(top level)"
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(problems)
