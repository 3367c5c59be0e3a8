"""The ``mdp`` command line. Human output by default, ``--json`` for machines.

Progress bars and logs go to stderr, so ``--json`` output on stdout stays parseable. A user error
(a missing path, a bad config, a store that does not exist, a malformed option) is one line on
stderr, ``mdp: error: ...`` naming the file and the fix, with exit code 2; ``mdp --debug ...`` or
``MDP_DEBUG=1`` adds the traceback.
"""

from __future__ import annotations

import json
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from mdp.config import MdpConfig, SourceConfig, config_path, describe_validation_error, load_config
from mdp.runtime import configure_process
from mdp_cli import passwords
from mdp_cli.progress import parse_bar

try:  # typer >= 0.22 carries its own copy of click
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older typer on the real click
    from click.exceptions import NoArgsIsHelpError, UsageError  # type: ignore[assignment]

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

_debug = os.environ.get("MDP_DEBUG", "").lower() not in ("", "0", "false", "no")


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of an error (or set MDP_DEBUG=1)")
    ] = False,
) -> None:
    global _debug
    _debug = _debug or debug


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
        typer.Option(
            "--password",
            help="PDF password as NAME_OR_GLOB=PASSWORD (repeatable); visible to every user in `ps` "
            "while mdp runs: prefer --password-file, --password-env or --password-prompt",
        ),
    ] = None,
    password_file: Annotated[
        list[Path] | None,
        typer.Option("--password-file", help="File of NAME_OR_GLOB=PASSWORD lines ('#' comments; chmod 600)"),
    ] = None,
    password_env: Annotated[
        list[str] | None,
        typer.Option(
            "--password-env",
            help="[NAME_OR_GLOB=]VAR: the password is environment variable VAR's value (no name: every file)",
        ),
    ] = None,
    password_prompt: Annotated[
        list[str] | None,
        typer.Option("--password-prompt", help="NAME_OR_GLOB: ask for its password without echo"),
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
    from mdp.stages import run_ingest

    config = _config(config_file, store)
    taken: set[str] = set()
    sources = [_source_for_path(p, taken) for p in paths]
    if include or exclude:
        sources = [_filtered(source, include, exclude) for source in sources]
    if source_name:
        if len(sources) != 1:
            raise typer.BadParameter("--source names one source; pass one path with it")
        sources[0] = sources[0].model_copy(update={"name": source_name})
    config.parsing.passwords.update(
        passwords.collect(
            password or [], password_file or [], password_env or [], password_prompt or [], _err
        )
    )
    show = not as_json or sys.stderr.isatty()
    report = run_ingest(
        config,
        sources,
        progress=parse_bar if show else None,
        show_embed_progress=show,
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
    if k < 1:
        raise typer.BadParameter(f"-k must be >= 1 (how many chunks to return), got {k}")
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
    from mdp.evaluation import BEIR_PROTOCOLS, evaluate_beir

    if protocol not in BEIR_PROTOCOLS:
        raise typer.BadParameter(f"choose one of {', '.join(BEIR_PROTOCOLS)}", param_hint="--protocol")
    config = _config(config_file, store)
    if not store:
        suffix = "" if protocol == "pipeline" else f"-{protocol}"
        config.store.uri = str((Path("var") / "beir" / f"{beir.resolve().name}{suffix}").resolve())
    result = evaluate_beir(
        config, beir.resolve(), protocol=protocol, progress=parse_bar, show_embed_progress=True, log=_err
    )
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
            help="Sections: embed ingest query incremental scale embed_gpu (scale only when named; "
            "on a GPU, embed runs embed_gpu)",
        ),
    ] = None,
    chunks: Annotated[
        int | None,
        typer.Option("--chunks", help="Chunks for the scale section (default 1M; 100k with --quick)"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the benchmarks; write benchmarks/results.json and RESULTS.md."""
    from mdp.bench import run_benchmarks
    from mdp.bench.report import write_results_md

    results = run_benchmarks(only, quick=quick, log=_err, chunks=chunks)
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


# What a user can fix: a path, a config, a store, an option. Anything else is a bug in mdp.
USER_ERRORS = (OSError, ValueError, KeyError, LookupError, RuntimeError, UsageError)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):  # pydantic's own text spans lines and echoes the values
        return describe_validation_error(exc)
    if isinstance(exc, UsageError):
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        return exc.format_message() + hint
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(part.strip() for part in message.splitlines() if part.strip()) or type(exc).__name__


def main() -> None:
    configure_process()  # telemetry off and BLAS bound before any command imports its libraries
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except (KeyboardInterrupt, typer.Abort):
        _err("mdp: interrupted")
        raise SystemExit(130) from None
    except USER_ERRORS as exc:
        if _debug:
            traceback.print_exc()
        _err(f"mdp: error: {_one_line(exc)}")
        raise SystemExit(2) from None
    except Exception as exc:
        if _debug:
            traceback.print_exc()
        _err(
            f"mdp: internal error: {type(exc).__name__}: {_one_line(exc)} — run it again with --debug "
            "(or MDP_DEBUG=1) for the traceback, and report it"
        )
        raise SystemExit(1) from None
    raise SystemExit(code if isinstance(code, int) else 0)
