"""Parse and chunk files in worker processes, each file under a time and a memory budget.

Real inputs hang parsers, blow up memory and crash native code. Each file is parsed and
chunked in a long-lived worker process (unstructured takes seconds to import, so workers
are reused); the parent watches every worker:

- wall clock: a file still running after ``[parsing] timeout_s`` gets its worker killed
  and is quarantined as ``"timeout after 60 s"``;
- memory: after warm-up the worker caps its address space at its warm size plus
  ``[parsing] memory_mb`` (``RLIMIT_AS`` where the OS enforces it) and the parent also
  watches its resident size against the same budget: ``"memory budget exceeded (2048 MB)"``;
- crashes: a worker that dies (segfault, abort) quarantines its file as
  ``"parser crashed (signal 11)"``.

A dead or killed worker is replaced and the run continues. Every input file yields exactly
one :class:`FileOutcome` (in completion order), and within a file every document ends as
chunks or as a quarantine record.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing as mp
import os
import pickle
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from mdp.chunking import chunk_elements, unindexable_reason
from mdp.config import ChunkingConfig, MdpConfig, ParsingConfig
from mdp.fidelity import chunk_extractor, screen_elements
from mdp.fileaccess import FileChangedError, FileIdentity, verified_file
from mdp.forkserver_warmup import MODULES as WARMUP_MODULES
from mdp.ids import document_id
from mdp.parsers import (
    ParseContext,
    ParsedDocument,
    ParseFailure,
    Parser,
    ParserSetupError,
    UnknownFormatError,
    get_parser,
    in_process_parsers,
    register_parser,
)
from mdp.records import ChunkedDocument
from mdp.runtime import configure_process
from mdp.schemas import Chunk, Document, QuarantineRecord, SourceFile
from mdp.tokenizer import load_tokenizer, max_seq_length, resolve_model_path

MB = 1024 * 1024
POLL_S = 0.25
STARTUP_TIMEOUT_S = 600.0
MAX_STARTUP_FAILURES = 3

log = logging.getLogger(__name__)


@dataclass
class FileOutcome:
    """What became of one input file."""

    file: SourceFile
    documents: list[ChunkedDocument] = field(default_factory=list)
    quarantine: list[QuarantineRecord] = field(default_factory=list)
    pages: int = 0
    seconds: float = 0.0

    @property
    def discovered(self) -> int:
        """Documents found in the file: chunked + quarantined."""
        return len(self.documents) + len(self.quarantine)

    @property
    def chunk_count(self) -> int:
        return sum(len(d.chunks) for d in self.documents)


@dataclass(frozen=True)
class WorkerSetup:
    """Everything a worker needs; pickled once per worker start."""

    formats: tuple[str, ...]
    tokenizer_dir: str
    parsing: ParsingConfig
    chunking: ChunkingConfig
    extra_parsers: tuple[Parser, ...] = ()


# -- the work done inside a worker ----------------------------------------------------------


def _json_safe(metadata: dict[str, Any]) -> dict[str, Any]:
    value = json.loads(json.dumps(metadata, default=str, ensure_ascii=False))
    return value if isinstance(value, dict) else {}


def _source_root(file: SourceFile) -> Path:
    depth = len(PurePosixPath(file.relpath).parts)
    return Path(file.path).parents[depth - 1] if depth else Path(file.path).parent


def _pages_of(doc: ParsedDocument) -> int:
    count = doc.metadata.get("page_count")
    if isinstance(count, int) and count > 0:
        return count
    numbers = [getattr(e.metadata, "page_number", None) for e in doc.elements]
    return max((n for n in numbers if isinstance(n, int)), default=0)


def _quarantine(file: SourceFile, reason: str, parser: str = "", **extra: Any) -> QuarantineRecord:
    extra.setdefault("document_id", document_id(file.source, file.relpath))
    return QuarantineRecord(
        source=file.source,
        path=file.path,
        relpath=file.relpath,
        reason=reason,
        stage="parse",
        parser=parser,
        format=file.format,
        **extra,
    )


def _file_failure(file: SourceFile, reason: str, seconds: float = 0.0) -> FileOutcome:
    """The whole file failed (timeout, crash, memory): one record, with the parser's name if known."""
    parser = ""
    with contextlib.suppress(Exception):
        parser = get_parser(file.format).name
    record = _quarantine(file, reason, parser, content_hash=file.content_hash)
    return FileOutcome(file=file, quarantine=[record], seconds=seconds)


def _item_id(file: SourceFile, item: ParsedDocument | ParseFailure) -> tuple[str, bool]:
    """(document id, is a record) of what a parser yielded: the file, one of its records, or a line."""
    if item.external_id is not None and item.external_id != file.relpath:
        return document_id(file.source, file.relpath, item.external_id), True
    if item.external_id is None and item.line is not None:
        return document_id(file.source, file.relpath, line=item.line), False
    return document_id(file.source, file.relpath), False


def _claim(outcome: FileOutcome, doc_id: str, line: int | None) -> str | None:
    """A free id for the next item of this file: ``doc_id``, else its line's id, else None (taken)."""
    taken = {d.document_id for d in outcome.documents} | {q.document_id for q in outcome.quarantine}
    if doc_id not in taken:
        return doc_id
    if line is not None:
        line_id = document_id(outcome.file.source, outcome.file.relpath, line=line)
        if line_id not in taken:
            return line_id
    return None


def _add_to_holder(outcome: FileOutcome, doc_id: str, reason: str, parser_name: str) -> None:
    """A second failure for an id already used in this file joins the first (one row per id); a
    document that already took the id is quarantined with it, since the parser failed on its file."""
    for i, record in enumerate(outcome.quarantine):
        if record.document_id == doc_id:
            outcome.quarantine[i] = record.model_copy(update={"reason": f"{record.reason}; {reason}"})
            return
    for i, chunked in enumerate(outcome.documents):
        if chunked.document_id == doc_id:
            del outcome.documents[i]
            content_hash = chunked.document.content_hash
            outcome.quarantine.append(
                _quarantine(outcome.file, reason, parser_name, document_id=doc_id, content_hash=content_hash)
            )
            return


def process_one(file: SourceFile, setup: WorkerSetup, tokenizer: Any) -> FileOutcome:
    """Parse and chunk one file in this process (the worker body; also usable for debugging).

    The file is opened again from its source root without following symlinks and checked against
    the identity discovery recorded (mdp/fileaccess.py); the parser reads that verified descriptor.
    Every item the parser yields gets an id of its own (mdp/ids.py): two items never share one.
    """
    started = time.perf_counter()
    outcome = FileOutcome(file=file)
    try:
        parser = get_parser(file.format)
    except UnknownFormatError as exc:
        outcome.quarantine.append(_quarantine(file, str(exc), content_hash=file.content_hash))
        return outcome
    context = ParseContext(
        source=file.source,
        root=_source_root(file),
        relpath=file.relpath,
        parsing=setup.parsing,
        content_hash=file.content_hash,
    )
    expected = FileIdentity(file.device, file.inode, file.size_bytes, file.mtime_ns)
    with contextlib.ExitStack() as stack:
        try:
            path = stack.enter_context(verified_file(context.root, file.relpath, expected))
        except FileChangedError as exc:
            outcome.quarantine.append(
                _quarantine(file, exc.strerror, parser.name, content_hash=file.content_hash)
            )
            return outcome
        except OSError as exc:
            reason = f"unreadable: {exc.strerror or exc} — check the file's permissions"
            outcome.quarantine.append(_quarantine(file, reason, parser.name, content_hash=file.content_hash))
            return outcome

        def readable(reason: str) -> str:  # parsers see the descriptor's path; people know the file
            return reason.replace(str(path), file.relpath)

        try:
            for item in parser.parse(path, context):
                natural_id, is_record = _item_id(file, item)
                doc_id = _claim(outcome, natural_id, item.line)
                failure = None
                if isinstance(item, ParseFailure):
                    failure = readable(item.reason)
                elif doc_id != natural_id:
                    failure = f"duplicate document id {item.external_id!r}: the parser yielded it twice"
                if failure is not None:
                    if doc_id is None:
                        _add_to_holder(outcome, natural_id, failure, parser.name)
                        continue
                    outcome.quarantine.append(
                        _quarantine(
                            file,
                            failure,
                            parser.name,
                            document_id=doc_id,
                            content_hash=item.content_hash,
                            line=item.line,
                        )
                    )
                    continue
                outcome.pages += _pages_of(item)
                uri = Path(file.path).as_uri()
                _chunk_document(
                    file,
                    item,
                    doc_id,
                    f"{uri}#{quote(item.external_id, safe='')}" if is_record else uri,
                    parser.name,
                    setup,
                    tokenizer,
                    outcome,
                )
        except (ParserSetupError, MemoryError):
            raise
        except Exception as exc:  # the parser broke mid-file: what it yielded so far stays accounted
            reason = readable(f"parser error: {type(exc).__name__}: {exc}")
            file_id = document_id(file.source, file.relpath)
            if _claim(outcome, file_id, None) is None:
                _add_to_holder(outcome, file_id, reason, parser.name)
            else:
                outcome.quarantine.append(_quarantine(file, reason, parser.name))
    outcome.seconds = time.perf_counter() - started
    return outcome


def _chunk_document(
    file: SourceFile,
    item: ParsedDocument,
    doc_id: str,
    uri: str,
    parser_name: str,
    setup: WorkerSetup,
    tokenizer: Any,
    outcome: FileOutcome,
) -> None:
    def quarantine(reason: str) -> None:
        outcome.quarantine.append(
            _quarantine(
                file, reason, parser_name, document_id=doc_id, content_hash=item.content_hash, line=item.line
            )
        )

    screening = screen_elements(item.elements, setup.parsing.min_text_fidelity)  # garbage never gets chunked
    if screening.reason:
        quarantine(screening.reason)
        return
    item.metadata.update(screening.metadata)
    try:
        drafts = chunk_elements(item.elements, tokenizer, setup.chunking)
    except MemoryError:
        raise
    except Exception as exc:
        quarantine(f"chunking failed: {type(exc).__name__}: {exc}")
        return
    if not drafts:
        quarantine("no text extracted: the parser found no text in this document")
        return
    unindexable = unindexable_reason(
        tokenizer, [d.text for d in drafts], [getattr(e, "text", None) or "" for e in item.elements]
    )
    if unindexable:
        quarantine(unindexable)
        return
    document = Document(
        id=doc_id,
        source=file.source,
        uri=uri,
        path=file.path,
        relpath=file.relpath,
        external_id=item.external_id,
        content_hash=item.content_hash,
        format=file.format,
        metadata=_json_safe(item.metadata),
    )
    chunks = [
        Chunk(
            id=Chunk.make_id(doc_id, position),
            document_id=doc_id,
            text=draft.text,
            position=position,
            pages=draft.pages,
            element_types=draft.element_types,
            token_count=draft.token_count,
            metadata={"extractor": chunk_extractor(item.metadata, draft.pages, parser_name)},
        )
        for position, draft in enumerate(drafts)
    ]
    outcome.documents.append(ChunkedDocument(document, chunks, file.content_hash))


def _address_space() -> tuple[int, int]:
    import psutil

    info = psutil.Process().memory_info()
    return int(info.vms), int(info.rss)


def _limit_memory(budget_mb: int) -> None:
    """Cap this process's address space at its current size plus the budget (Linux, BSD)."""
    try:
        import resource
    except ImportError:  # Windows: the parent's resident-size watch is the only guard
        return
    if not hasattr(resource, "RLIMIT_AS"):
        return
    vms, _ = _address_space()
    limit = vms + budget_mb * MB
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY and limit > hard:
        limit = hard
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _quiet_libraries() -> None:
    for name in ("pdfminer", "pikepdf", "unstructured", "PIL", "fontTools"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _warm(setup: WorkerSetup) -> Any:
    for parser in setup.extra_parsers:
        register_parser(parser, replace=True)
    tokenizer = load_tokenizer(setup.tokenizer_dir)
    import unstructured.chunking.basic  # noqa: F401 - pay the import before the first deadline
    import unstructured.chunking.title  # noqa: F401

    for fmt in setup.formats:
        with contextlib.suppress(UnknownFormatError):
            warmup = getattr(get_parser(fmt), "warmup", None)
            if callable(warmup):
                warmup()
    return tokenizer


def _worker_main(conn: Connection, setup: WorkerSetup) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    configure_process(blas=False)  # inherited already; this covers a worker started some other way
    _quiet_libraries()
    try:
        tokenizer = _warm(setup)
        _limit_memory(setup.parsing.memory_mb)
    except ParserSetupError as exc:
        conn.send(("fatal", str(exc)))
        return
    except BaseException as exc:
        conn.send(("fatal", f"parse worker failed to start: {type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", os.getpid(), _address_space()[1]))
    memory_reason = f"memory budget exceeded ({setup.parsing.memory_mb} MB)"
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        task_id, file = message
        recycle = False
        try:
            outcome = process_one(file, setup, tokenizer)
        except MemoryError:
            outcome, recycle = _file_failure(file, memory_reason), True
        except ParserSetupError as exc:
            conn.send(("fatal", str(exc)))
            return
        except BaseException as exc:
            reason = f"parser error: {type(exc).__name__}: {exc}"
            outcome, recycle = _file_failure(file, reason), True
        try:
            conn.send(("done", task_id, outcome, recycle))
        except MemoryError:
            outcome = _file_failure(file, memory_reason)
            recycle = True
            conn.send(("done", task_id, outcome, recycle))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            reason = f"parser error: result cannot be sent back: {exc}"
            conn.send(("done", task_id, _file_failure(file, reason), recycle))
        if recycle:  # after a MemoryError or an odd failure the process state is suspect
            return


# -- the parent side ------------------------------------------------------------------------


@dataclass
class _Worker:
    proc: Any  # multiprocessing.process.BaseProcess
    conn: Connection
    started: float
    ready: bool = False
    baseline_rss: int = 0
    task: tuple[int, SourceFile] | None = None
    dispatched: float = 0.0
    retiring: bool = False  # announced it exits after its last result: send it nothing more


UNSTRUCTURED_FORMATS = {"pdf", "markdown", "html", "text"}
# one process per core already: native thread pools inside each worker would only fight for the cores
THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "TOKENIZERS_PARALLELISM",
)


@contextlib.contextmanager
def _single_threaded_env() -> Iterator[None]:
    """Workers (and the fork server) start with one native thread each, unless the user set otherwise."""
    added = [key for key in THREAD_ENV if key not in os.environ]
    for key in added:
        os.environ[key] = "false" if key == "TOKENIZERS_PARALLELISM" else "1"
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _context(setup: WorkerSetup) -> Any:
    """Linux: a fork server that imported unstructured once, so (re)starting a worker costs a fork,
    not seconds of imports, and the imported code is shared copy-on-write. Elsewhere: spawn.

    The fork server is per process and keeps the modules of its first start; later pools reuse it.
    """
    if not sys.platform.startswith("linux") or os.environ.get("MDP_WORKER_START") == "spawn":
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    preload = [
        "unstructured.documents.elements",
        "unstructured.chunking.title",
        "unstructured.chunking.basic",
        "mdp.isolation",
    ]
    warmup = WARMUP_MODULES["registry"]
    if UNSTRUCTURED_FORMATS & set(setup.formats):
        preload += [
            "pikepdf",
            "unstructured.partition.pdf",
            "unstructured.partition.text",
            "unstructured.partition.html",
            "unstructured.partition.md",
        ]
        warmup = WARMUP_MODULES[setup.parsing.sentence_splitter]
    ctx.set_forkserver_preload([*preload, warmup])  # the warm-up last, once everything is imported
    return ctx


class WorkerPool:
    """Long-lived parse workers with per-file budgets. Use :func:`process_files`."""

    def __init__(self, setup: WorkerSetup, workers: int) -> None:
        configure_process(blas=False)  # before the fork server starts: workers inherit the environment
        self.setup = setup
        self.size = max(1, workers)
        self.ctx = _context(setup)
        self.workers: list[_Worker] = []
        self.startup_failures = 0

    def _spawn(self) -> _Worker:
        parent, child = self.ctx.Pipe(duplex=True)
        proc = self.ctx.Process(target=_worker_main, args=(child, self.setup), daemon=True, name="mdp-parse")
        with _single_threaded_env():
            proc.start()
        child.close()
        worker = _Worker(proc=proc, conn=parent, started=time.monotonic())
        self.workers.append(worker)
        return worker

    def _retire(self, worker: _Worker, kill: bool) -> None:
        if worker in self.workers:
            self.workers.remove(worker)
        if kill and worker.proc.is_alive():
            worker.proc.kill()
        worker.proc.join(timeout=5)
        if worker.proc.is_alive():
            worker.proc.kill()
            worker.proc.join(timeout=5)
        worker.conn.close()

    def close(self) -> None:
        for worker in list(self.workers):
            if worker.task is None and worker.proc.is_alive():
                with contextlib.suppress(OSError, ValueError):
                    worker.conn.send(None)
        deadline = time.monotonic() + 3
        for worker in list(self.workers):
            if worker.task is None:
                worker.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            self._retire(worker, kill=True)

    def run(
        self, files: list[SourceFile], progress: Callable[[int, int], None] | None = None
    ) -> Iterator[FileOutcome]:
        total = len(files)
        # largest files first: the long ones start early and the short ones fill in (shorter makespan)
        order = sorted(enumerate(files), key=lambda item: (-item[1].size_bytes, item[0]))
        queue: deque[tuple[int, SourceFile]] = deque(order)
        finished = 0
        timeout = self.setup.parsing.timeout_s
        budget_mb = self.setup.parsing.memory_mb
        for _ in range(min(self.size, total)):
            self._spawn()
        import psutil

        while finished < total:
            now = time.monotonic()
            for worker in self.workers:
                if worker.ready and not worker.retiring and worker.task is None and queue:
                    task = queue.popleft()
                    try:
                        worker.conn.send(task)
                    except (OSError, ValueError):  # died while idle: the file goes to another worker
                        queue.appendleft(task)
                        continue
                    worker.task, worker.dispatched = task, now
            deadlines = [w.dispatched + timeout - now for w in self.workers if w.task is not None]
            wait_s = max(0.0, min([POLL_S, *deadlines]))
            wait([w.conn for w in self.workers] + [w.proc.sentinel for w in self.workers], timeout=wait_s)

            results: list[FileOutcome] = []
            for worker in list(self.workers):
                results.extend(self._drain(worker))
            now = time.monotonic()
            for worker in list(self.workers):
                if worker.task is None:
                    if not worker.ready and now - worker.started > STARTUP_TIMEOUT_S:
                        self._retire(worker, kill=True)
                        raise RuntimeError(f"a parse worker did not start within {STARTUP_TIMEOUT_S:.0f} s")
                    continue
                reason = None
                if now - worker.dispatched > timeout:
                    reason = f"timeout after {timeout:g} s"
                elif worker.ready:
                    with contextlib.suppress(psutil.Error):
                        rss = psutil.Process(worker.proc.pid).memory_info().rss
                        if rss > worker.baseline_rss + budget_mb * MB:
                            reason = f"memory budget exceeded ({budget_mb} MB)"
                if reason:
                    _, file = worker.task
                    seconds = now - worker.dispatched
                    self._retire(worker, kill=True)
                    results.append(_file_failure(file, reason, seconds))
            # keep the pool at size while work remains
            busy = sum(1 for w in self.workers if w.task is not None)
            usable = sum(1 for w in self.workers if not w.retiring)
            while usable < min(self.size, busy + len(queue)):
                usable += 1
                self._spawn()
            for outcome in results:
                finished += 1
                if progress is not None:
                    progress(finished, total)
                yield outcome

    def _drain(self, worker: _Worker) -> list[FileOutcome]:
        """Read every message a worker sent; handle its death."""
        out: list[FileOutcome] = []
        while True:
            try:
                if not worker.conn.poll():
                    break
                message = worker.conn.recv()
            except (EOFError, OSError):
                break
            kind = message[0]
            if kind == "ready":
                worker.ready = True
                worker.baseline_rss = int(message[2])
                self.startup_failures = 0
            elif kind == "done":
                outcome: FileOutcome = message[2]
                if worker.task is not None:
                    outcome.file = worker.task[1]
                worker.task = None
                worker.retiring = bool(message[3])
                out.append(outcome)
            elif kind == "fatal":
                self._retire(worker, kill=True)
                raise ParserSetupError(message[1])
        if worker.proc.is_alive():
            return out
        worker.proc.join(timeout=1)
        code = worker.proc.exitcode
        if worker.task is not None:
            _, file = worker.task
            if code is not None and code < 0:
                reason = f"parser crashed (signal {-code})"
                if -code == signal.SIGKILL:
                    reason += " — killed from outside, possibly by the system's out-of-memory killer"
            else:
                reason = f"parser worker exited unexpectedly (exit code {code})"
            out.append(_file_failure(file, reason, time.monotonic() - worker.dispatched))
            worker.task = None
        elif not worker.ready:
            self.startup_failures += 1
            if self.startup_failures >= MAX_STARTUP_FAILURES:
                self._retire(worker, kill=True)
                raise RuntimeError(
                    f"parse workers keep dying while starting (exit code {code}); "
                    "run `python -c 'import unstructured.partition.pdf'` to see why"
                )
        self._retire(worker, kill=False)
        return out


def worker_count(parsing: ParsingConfig, files: int) -> int:
    if parsing.workers:
        wanted = parsing.workers
    else:
        try:
            wanted = len(os.sched_getaffinity(0))
        except AttributeError:  # macOS, Windows
            wanted = os.cpu_count() or 1
    return max(1, min(wanted, files))


def make_setup(files: list[SourceFile], config: MdpConfig, tokenizer_dir: Path | None = None) -> WorkerSetup:
    model_dir = resolve_model_path(tokenizer_dir or config.model.path)
    chunking = config.chunking
    limit = max_seq_length(model_dir)
    if chunking.max_tokens > limit:  # the encoder would truncate longer chunks: text silently lost
        log.warning(
            "[chunking] max_tokens=%d exceeds the model's %d; using %d", chunking.max_tokens, limit, limit
        )
        chunking = chunking.model_copy(update={"max_tokens": limit})
    setup = WorkerSetup(
        formats=tuple(sorted({f.format for f in files})),
        tokenizer_dir=str(model_dir),
        parsing=config.parsing,
        chunking=chunking,
        extra_parsers=tuple(in_process_parsers()),
    )
    try:
        pickle.dumps(setup)
    except Exception as exc:
        raise TypeError(
            f"a parser registered in-process cannot be sent to the parse workers ({exc}); "
            "define it at module level in an importable module"
        ) from exc
    return setup


def process_files(
    files: list[SourceFile],
    config: MdpConfig,
    tokenizer_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[FileOutcome]:
    """Parse and chunk ``files`` in parallel worker processes; one outcome per file, as they finish.

    Raises :class:`ParserSetupError` when the parsing stack is broken (for example the spaCy
    model unstructured needs is missing), instead of quarantining every file for it.
    """
    files = list(files)
    if not files:
        return
    setup = make_setup(files, config, tokenizer_dir)
    pool = WorkerPool(setup, worker_count(config.parsing, len(files)))
    try:
        yield from pool.run(files, progress)
    finally:
        pool.close()
