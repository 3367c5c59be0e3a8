"""Parse isolation: budgets, crashes and accounting with real worker processes.

The hang/crash/memory parsers below are test-only *formats* registered in-process; the
isolation machinery under test (workers, budgets, recovery) is the real one.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mdp.config import ChunkingConfig, MdpConfig, ParsingConfig, SourceConfig
from mdp.isolation import FileOutcome, process_files
from mdp.parsers import ParseContext, ParsedDocument, ParseFailure, ParserSetupError, register_parser
from mdp.parsers import unregister_parser as _unregister
from mdp.sources import discover


def _text_elements(text: str) -> list:
    from unstructured.documents.elements import NarrativeText, Title

    return [Title(text="Test file"), NarrativeText(text=text)]


class OkParser:
    """Reads the file's text as one paragraph."""

    name = "test-ok"
    formats = ("tok",)
    extensions = (".tok",)

    def parse(self, path: Path, context: ParseContext) -> Iterator[ParsedDocument | ParseFailure]:
        yield ParsedDocument(context.relpath, _text_elements(path.read_text()), context.file_hash(path))


class HangParser:
    name = "test-hang"
    formats = ("thang",)
    extensions = (".thang",)

    def parse(self, path: Path, context: ParseContext) -> Iterator[ParsedDocument | ParseFailure]:
        time.sleep(3600)
        yield ParseFailure("unreachable")


class AbortParser:
    name = "test-abort"
    formats = ("tabort",)
    extensions = (".tabort",)

    def parse(self, path: Path, context: ParseContext) -> Iterator[ParsedDocument | ParseFailure]:
        os.abort()
        yield ParseFailure("unreachable")


class SegfaultParser:
    name = "test-segv"
    formats = ("tsegv",)
    extensions = (".tsegv",)

    def parse(self, path: Path, context: ParseContext) -> Iterator[ParsedDocument | ParseFailure]:
        ctypes.string_at(0)  # reads address 0: SIGSEGV in native code
        yield ParseFailure("unreachable")


class MemoryHogParser:
    name = "test-memory"
    formats = ("tmem",)
    extensions = (".tmem",)

    def parse(self, path: Path, context: ParseContext) -> Iterator[ParsedDocument | ParseFailure]:
        hoard = []
        for _ in range(64):  # up to 64 GB, far beyond any budget
            hoard.append(bytearray(1024 * 1024 * 1024))
        yield ParseFailure(f"unreachable {len(hoard)}")


class PartialParser:
    """Yields a good document, a failure and an empty document, then breaks."""

    name = "test-partial"
    formats = ("tpart",)
    extensions = (".tpart",)

    def parse(self, path: Path, context: ParseContext) -> Iterator[ParsedDocument | ParseFailure]:
        yield ParsedDocument("a", _text_elements("first record"), "a" * 64, line=1)
        yield ParseFailure("line 2: bad record", line=2)
        yield ParsedDocument("c", [], "c" * 64, line=3)
        raise ValueError("the parser broke after three records")


class BrokenSetupParser:
    name = "test-setup"
    formats = ("tsetup",)
    extensions = (".tsetup",)

    def warmup(self) -> None:
        raise ParserSetupError("test stack is not installed: run the fix")

    def parse(self, path: Path, context: ParseContext) -> Iterator[ParsedDocument | ParseFailure]:
        yield ParseFailure("unreachable")


TEST_PARSERS = [
    OkParser,
    HangParser,
    AbortParser,
    SegfaultParser,
    MemoryHogParser,
    PartialParser,
    BrokenSetupParser,
]


@pytest.fixture(scope="module", autouse=True)
def test_formats() -> Iterator[None]:
    for cls in TEST_PARSERS:
        register_parser(cls())
    yield
    for cls in TEST_PARSERS:
        _unregister(cls.formats[0])


def _source(root: Path) -> SourceConfig:
    return SourceConfig(name="iso", root=root)


def _run(root: Path, **parsing: object) -> list[FileOutcome]:
    source = _source(root)
    config = MdpConfig(sources=[source], parsing=ParsingConfig(**parsing))  # type: ignore[arg-type]
    found = discover(source, config.parsing)
    assert not found.refused, found.refused
    seen: list[tuple[int, int]] = []
    outcomes = list(
        process_files(found.files, config, progress=lambda done, total: seen.append((done, total)))
    )
    assert [d for d, _ in seen] == list(range(1, len(found.files) + 1))
    assert sorted(o.file.relpath for o in outcomes) == sorted(f.relpath for f in found.files)
    return outcomes


@pytest.mark.slow
def test_hang_crash_and_memory_are_quarantined_and_the_pool_recovers(tmp_path: Path) -> None:
    names = [
        "a.tok",
        "hang.thang",
        "b.tok",
        "abort.tabort",
        "c.tok",
        "segv.tsegv",
        "d.tok",
        "hog.tmem",
        "e.tok",
    ]
    for name in names:
        (tmp_path / name).write_text(f"Contents of {name}. " * 5)
    outcomes = {o.file.relpath: o for o in _run(tmp_path, timeout_s=3, memory_mb=256, workers=2)}

    assert len(outcomes) == len(names)  # exactly one outcome per input
    for name in ("a.tok", "b.tok", "c.tok", "d.tok", "e.tok"):
        assert outcomes[name].quarantine == [], outcomes[name].quarantine
        assert len(outcomes[name].documents) == 1 and outcomes[name].chunk_count >= 1

    def reason(name: str) -> str:
        (record,) = outcomes[name].quarantine
        assert record.stage == "parse" and record.source == "iso"
        assert outcomes[name].documents == []
        return record.reason

    assert outcomes["hang.thang"].quarantine[0].parser == "test-hang"
    assert outcomes["hang.thang"].quarantine[0].content_hash == outcomes["hang.thang"].file.content_hash
    assert reason("hang.thang") == "timeout after 3 s"
    assert reason("abort.tabort").startswith("parser crashed (signal 6)")
    assert reason("segv.tsegv").startswith("parser crashed (signal 11)")
    assert reason("hog.tmem") == "memory budget exceeded (256 MB)"


def test_documents_and_chunks_follow_the_id_contract(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "one.tok").write_text("A sentence about apples. " * 200)
    (tmp_path / "many.tpart").write_text("ignored")
    outcomes = {o.file.relpath: o for o in _run(tmp_path, workers=1)}

    one = outcomes["sub/one.tok"]
    (chunked,) = one.documents
    document, chunks = chunked.document, chunked.chunks
    assert document.id == "iso:sub/one.tok"
    assert document.external_id == "sub/one.tok"
    assert document.uri == (tmp_path / "sub" / "one.tok").resolve().as_uri()
    assert document.content_hash == one.file.content_hash
    assert [c.id for c in chunks] == [f"iso:sub/one.tok::{i}" for i in range(len(chunks))]
    assert len(chunks) > 1 and all(1 <= c.token_count <= 256 for c in chunks)

    part = outcomes["many.tpart"]
    # accounting: 3 documents yielded + 1 failure of the rest of the file
    (chunked_a,) = part.documents
    doc_a = chunked_a.document
    assert doc_a.id == "iso:many.tpart#a" and doc_a.uri.endswith("many.tpart#a") and doc_a.external_id == "a"
    reasons = {q.reason: q for q in part.quarantine}
    assert reasons["line 2: bad record"].line == 2
    empty = reasons["no text extracted: the parser found no text in this document"]
    assert empty.document_id == "iso:many.tpart#c" and empty.line == 3
    assert any(r.startswith("parser error: ValueError: the parser broke") for r in reasons)
    assert part.discovered == 4


def test_setup_failure_stops_the_run_loudly(tmp_path: Path) -> None:
    (tmp_path / "x.tsetup").write_text("x")
    with pytest.raises(ParserSetupError, match="run the fix"):
        _run(tmp_path, workers=1)


def test_real_formats_through_workers(tmp_path: Path) -> None:
    """Markdown, HTML, text, JSONL and a generated PDF through the real parsers in workers."""
    from fpdf import FPDF

    (tmp_path / "guide.md").write_text("# Guide\n\nLanceDB stores the vectors on disk.\n\n- one\n- two\n")
    (tmp_path / "page.html").write_text("<html><body><h1>Garden</h1><p>Tomatoes need sun.</p></body></html>")
    (tmp_path / "notes.txt").write_text("Bananas are rich in potassium.\n")
    (tmp_path / "rows.jsonl").write_text(
        '{"_id": "r1", "title": "Bread", "text": "Sourdough rises slowly."}\n'
        "not json\n\n"
        '{"_id": "r2", "text": "Espresso is strong.", "lang": "en"}\n'
    )
    pdf = FPDF()
    for page in range(3):
        pdf.add_page()
        pdf.set_font("Helvetica", size=12)
        pdf.multi_cell(0, 8, f"Page {page + 1}. " + "Retrieval needs well sized chunks of text. " * 40)
    pdf.output(str(tmp_path / "doc.pdf"))

    chunking = ChunkingConfig(max_tokens=64, target_tokens=48)
    source = _source(tmp_path)
    config = MdpConfig(sources=[source], chunking=chunking, parsing=ParsingConfig(workers=2))
    outcomes = {o.file.relpath: o for o in process_files(discover(source).files, config)}
    assert set(outcomes) == {"guide.md", "page.html", "notes.txt", "rows.jsonl", "doc.pdf"}

    for name in ("guide.md", "page.html", "notes.txt", "doc.pdf"):
        assert outcomes[name].quarantine == [] and len(outcomes[name].documents) == 1, name
    rows = outcomes["rows.jsonl"]
    assert sorted(d.document_id for d in rows.documents) == ["iso:rows.jsonl#r1", "iso:rows.jsonl#r2"]
    ((bad,),) = [rows.quarantine]
    assert bad.line == 2 and "invalid JSON" in bad.reason
    assert rows.discovered == 3  # three non-blank lines

    pdf_chunks = outcomes["doc.pdf"].documents[0].chunks
    assert outcomes["doc.pdf"].pages == 3
    assert {p for c in pdf_chunks for p in c.pages} == {1, 2, 3}
    all_chunks = [c for o in outcomes.values() for d in o.documents for c in d.chunks]
    assert all(c.token_count <= 64 for c in all_chunks)
    md_chunks = outcomes["guide.md"].documents[0].chunks
    assert "Title" in md_chunks[0].element_types


def test_stopping_early_leaves_no_worker_behind(tmp_path: Path) -> None:
    import psutil

    for i in range(4):
        (tmp_path / f"f{i}.tok").write_text("text " * 20)
    (tmp_path / "slow.thang").write_text("hangs")
    source = _source(tmp_path)
    config = MdpConfig(sources=[source], parsing=ParsingConfig(workers=2, timeout_s=600))
    me = psutil.Process()

    def workers() -> set[int]:
        """Descendants except the fork server (a direct child running multiprocessing.forkserver)."""
        found = set()
        for proc in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                is_server = proc.ppid() == me.pid and "forkserver" in " ".join(proc.cmdline())
                if not is_server and proc.status() != psutil.STATUS_ZOMBIE:
                    found.add(proc.pid)
        return found

    before = workers()
    outcomes = process_files(discover(source).files, config)
    first = next(outcomes)  # the hanging file never finishes, so a .tok comes first
    assert first.file.relpath.endswith(".tok")
    started = workers() - before
    assert started
    outcomes.close()  # the consumer stops: busy and idle workers must go
    _, still = psutil.wait_procs(
        [psutil.Process(pid) for pid in started if psutil.pid_exists(pid)], timeout=10
    )
    assert not [p for p in still if p.status() != psutil.STATUS_ZOMBIE], still
