"""The ``mdp`` command line. Human output by default, ``--json`` for machines.

Progress bars and logs go to stderr, so ``--json`` output on stdout stays parseable.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

import mdp  # noqa: F401  (sets the offline/telemetry environment first)
from mdp.config import MdpConfig, SourceConfig, config_path, load_config

app = typer.Typer(
    help="mdp: documents to a versioned, measured vector index (MLX + Dagster).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
index_app = typer.Typer(help="Inspect and time-travel the index's versions.", no_args_is_help=True)
schema_app = typer.Typer(help="The versioned schemas.", no_args_is_help=True)
app.add_typer(index_app, name="index")
app.add_typer(schema_app, name="schema")

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout")]
StoreOpt = Annotated[str | None, typer.Option("--store", help="Store folder or URI (default: [store] uri)")]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="mdp.toml to use (default: MDP_CONFIG or repo's)")
]


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _emit(data: Any, as_json: bool, human: str) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        typer.echo(human)


def _config(config_file: Path | None, store: str | None = None) -> MdpConfig:
    path = config_file or config_path()
    config = load_config(path) if Path(path).exists() else MdpConfig().resolved(Path.cwd())
    if store:
        config = config.model_copy(deep=True)
        config.store.uri = store if "://" in store else str(Path(store).expanduser().resolve())
    return config


def _source_for_path(raw: str, taken: set[str]) -> SourceConfig:
    """A CLI path becomes a source: a folder is a root, a file a one-file root, a glob keeps its pattern."""
    path = Path(raw).expanduser()
    if any(ch in raw for ch in "*?["):
        parts = Path(raw).parts
        index = next(i for i, p in enumerate(parts) if any(ch in p for ch in "*?["))
        root = Path(*parts[:index]) if index else Path(".")  # the glob's fixed prefix is the root
        include = ["/".join(parts[index:])]
        name_base = root.resolve().name or "root"
    elif path.is_dir():
        root, include, name_base = path, ["**/*"], path.resolve().name
    elif path.exists():
        root, include, name_base = path.parent, [path.name], path.stem
    else:
        raise FileNotFoundError(f"{raw}: no such file or folder; pass a folder, a file or a quoted glob")
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "-", name_base) or "source"
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    taken.add(candidate)
    return SourceConfig(name=candidate, root=root.resolve(), include=include)


def _ingest_human(report: dict[str, Any]) -> str:
    lines = [
        f"discovered {report['discovered']} documents: {report['chunked_documents']} chunked, "
        f"{report['quarantined']} quarantined",
        f"chunks in index: {report['chunks']}  (embedded this run: {report['embedded']}, "
        f"cache hits: {report['cache_hits']}, unchanged files skipped: {report['unchanged_files']})",
        f"index version: {report['index_version']}  store: {report['store']}",
        "by format: "
        + ", ".join(
            f"{fmt} {c['discovered']} ({c['chunked_documents']} chunked, {c['quarantined']} quarantined)"
            for fmt, c in report.get("by_format", {}).items()
        ),
    ]
    if report["quarantine"]:
        lines.append("quarantine:")
        lines += [f"  {Path(q['path']).name}: {q['reason']}" for q in report["quarantine"][:25]]
        if len(report["quarantine"]) > 25:
            lines.append(f"  ... {len(report['quarantine']) - 25} more (mdp quarantine)")
    return "\n".join(lines)


def _filtered(source: SourceConfig, include: list[str] | None, exclude: list[str] | None) -> SourceConfig:
    """A path's source narrowed by --include/--exclude (a single-file source keeps its one file)."""
    update: dict[str, list[str]] = {"exclude": [*source.exclude, *(exclude or [])]}
    if include and source.include == ["**/*"]:
        update["include"] = list(include)
    return source.model_copy(update=update)


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Folders, files or quoted globs to index")],
    store: StoreOpt = None,
    config_file: ConfigOpt = None,
    as_json: JsonOpt = False,
    source_name: Annotated[str | None, typer.Option("--source", help="Source name (one path only)")] = None,
    retry_quarantined: Annotated[
        bool, typer.Option("--retry-quarantined", help="Re-parse quarantined files even if unchanged")
    ] = False,
    password: Annotated[
        list[str] | None,
        typer.Option("--password", help="PDF password as NAME_OR_GLOB=PASSWORD (repeatable)"),
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option("--include", help="Only files matching this glob, e.g. '**/*.pdf' (repeatable)"),
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Skip files matching this glob (repeatable)")
    ] = None,
) -> None:
    """Run the graph up to vector_index for PATHS (incremental: unchanged files are skipped)."""
    from mdp.pipeline import run_ingest

    config = _config(config_file, store)
    taken: set[str] = set()
    sources = [_source_for_path(p, taken) for p in paths]
    if include or exclude:
        sources = [_filtered(source, include, exclude) for source in sources]
    if source_name:
        if len(sources) != 1:
            raise typer.BadParameter("--source names one source; pass one path with it")
        sources[0] = sources[0].model_copy(update={"name": source_name})
    for item in password or []:
        pattern, sep, secret = item.partition("=")
        if not sep or not pattern:
            raise typer.BadParameter(f"--password {item!r}: use NAME_OR_GLOB=PASSWORD")
        config.parsing.passwords[pattern] = secret
    report = run_ingest(
        config,
        sources,
        progress=not as_json or sys.stderr.isatty(),
        log=_err,
        retry_quarantined=retry_quarantined,
    ).as_dict()
    _emit(report, as_json, _ingest_human(report))


@app.command()
def query(
    text: Annotated[str, typer.Argument(help="The query")],
    store: StoreOpt = None,
    config_file: ConfigOpt = None,
    strategy: Annotated[str, typer.Option("--strategy", help="vector | bm25 | hybrid")] = "hybrid",
    k: Annotated[int, typer.Option("-k", help="How many chunks")] = 5,
    version: Annotated[int | None, typer.Option("--version", help="Read this index version")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Top-k chunks for TEXT, with score, document id, source path and text."""
    from mdp.encoder import SentenceEncoder
    from mdp.retrieval import Retriever, retrieval_config
    from mdp.store import VectorStore

    if strategy not in ("vector", "bm25", "hybrid"):
        raise typer.BadParameter("--strategy must be vector, bm25 or hybrid")
    config = _config(config_file, store)
    db = VectorStore.from_config(config.store, read_only=True)
    encoder = None if strategy == "bm25" else SentenceEncoder.from_config(config.model)
    settings = retrieval_config(config)
    hits = Retriever(db, encoder, version=version, config=settings).search(text, strategy=strategy, k=k)
    rows = [
        {
            "rank": i + 1,
            "score": round(float(h.score), 6),
            "document_id": h.document_id,
            "chunk_id": h.chunk_id,
            "path": h.path,
            "text": h.text,
        }
        for i, h in enumerate(hits)
    ]
    human = "\n\n".join(
        f"{r['rank']}. [{r['score']:.4f}] {r['document_id']}\n   {r['path']}\n   "
        + (r["text"][:300].replace("\n", " ") + ("…" if len(r["text"]) > 300 else ""))
        for r in rows
    )
    _emit(
        {"query": text, "strategy": strategy, "version": version, "hits": rows}, as_json, human or "no hits"
    )


@app.command("eval")
def eval_command(
    beir: Annotated[
        Path, typer.Option("--beir", help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/test.tsv")
    ],
    protocol: Annotated[
        str,
        typer.Option(
            "--protocol",
            help="passages: one passage per document, truncated at the encoder's window (BEIR's "
            "protocol, comparable with published scores); pipeline: mdp's own chunking",
        ),
    ] = "passages",
    store: StoreOpt = None,
    config_file: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Index a BEIR-format set if needed and score every strategy on it."""
    from mdp.pipeline import BEIR_PROTOCOLS, evaluate_beir

    if protocol not in BEIR_PROTOCOLS:
        raise typer.BadParameter(f"choose one of {', '.join(BEIR_PROTOCOLS)}", param_hint="--protocol")
    config = _config(config_file, store)
    if not store:
        suffix = "" if protocol == "pipeline" else f"-{protocol}"
        config.store.uri = str((Path("var") / "beir" / f"{beir.resolve().name}{suffix}").resolve())
    result = evaluate_beir(config, beir.resolve(), protocol=protocol, progress=True, log=_err)
    human = result["table"]
    _emit(result, as_json, human)


@app.command()
def run(config_file: ConfigOpt = None) -> None:
    """Materialize the whole asset graph on the configured sources (the bundled sample by default)."""
    from mdp_assets.runner import run_all

    summary = run_all(config_file)
    typer.echo(summary["text"])


@app.command()
def quarantine(store: StoreOpt = None, config_file: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List quarantined documents and why."""
    from mdp.store import VectorStore

    config = _config(config_file, store)
    frame = VectorStore.from_config(config.store, read_only=True).quarantine()
    records = frame.to_dict(orient="records") if len(frame) else []
    human = "\n".join(f"{r['source']}\t{r['path']}\t{r['reason']}" for r in records) or "quarantine is empty"
    _emit(records, as_json, human)


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="Smaller, faster runs")] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            help="Sections: embed ingest query incremental embed_gpu (on a GPU, embed runs embed_gpu)",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the benchmarks; write benchmarks/results.json and RESULTS.md."""
    from mdp.bench import run_benchmarks
    from mdp.bench.report import write_results_md

    results = run_benchmarks(only, quick=quick, log=_err)
    path = write_results_md()
    _emit(results, as_json, json.dumps(results, indent=2, default=str) + f"\nwritten: {path}")


@app.command()
def doctor(config_file: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Check BLAS, model, spaCy model, store and Dagster home; say how to fix what is missing."""
    from mdp.doctor import run_doctor

    checks = run_doctor(config_file)
    human = "\n".join(f"[{'ok' if c['ok'] else 'FAIL'}] {c['name']}: {c['detail']}" for c in checks)
    _emit(checks, as_json, human)
    if not all(c["ok"] for c in checks):
        raise typer.Exit(1)


@app.command()
def sample(
    dest: Annotated[Path, typer.Argument(help="Folder to write the bundled corpus into")] = Path(
        "var/sample"
    ),
) -> None:
    """Write the bundled sample corpus (Markdown, a generated PDF, JSONL) and its labelled queries."""
    from mdp.sample import write_sample_corpus

    corpus = write_sample_corpus(dest)
    typer.echo(f"corpus: {corpus.corpus_root}\nqueries: {corpus.queries}\nqrels: {corpus.qrels}")


@index_app.command("versions")
def index_versions(store: StoreOpt = None, config_file: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List index versions with their run ids and counts."""
    from dataclasses import asdict

    from mdp.store import VectorStore

    config = _config(config_file, store)
    versions = [asdict(v) for v in VectorStore.from_config(config.store, read_only=True).versions()]
    human = "\n".join("  ".join(f"{k}={v}" for k, v in row.items()) for row in versions) or "no versions yet"
    _emit(versions, as_json, human)


@index_app.command("checkout")
def index_checkout(
    version: Annotated[int, typer.Argument(help="Version to read")],
    store: StoreOpt = None,
    config_file: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the index as it was at VERSION (read-only; query it with `mdp query --version`)."""
    from mdp.store import VectorStore

    config = _config(config_file, store)
    frame = VectorStore.from_config(config.store, read_only=True).chunks_frame(
        version=version, columns=["document_id"]
    )
    info = {
        "version": version,
        "chunks": len(frame),
        "documents": int(frame["document_id"].nunique()) if len(frame) else 0,
    }
    _emit(info, as_json, f"version {version}: {info['chunks']} chunks from {info['documents']} documents")


@schema_app.command("export")
def schema_export(dest: Annotated[Path, typer.Argument(help="Folder for <name>.schema.json files")]) -> None:
    """Export every registered schema as JSON Schema."""
    from mdp.schemas import export_json_schemas

    for path in export_json_schemas(dest):
        typer.echo(str(path))


@schema_app.command("list")
def schema_list() -> None:
    """Registered schemas and their versions."""
    from mdp.schemas import schema_registry

    for name, cls in sorted(schema_registry().items()):
        typer.echo(f"{name}\t{cls.schema_version}\t{cls.__module__}.{cls.__qualname__}")


def main() -> None:
    try:
        app()
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as exc:
        _err(f"mdp: error: {exc}")
        raise SystemExit(2) from None
