"""The bundled sample corpus: the project's own documentation, ready to ingest.

``write_sample_corpus(dest)`` materialises it as

```
dest/corpus/docs/*.md        Markdown documentation, one topic per file
dest/corpus/faq.jsonl        FAQ records (one document per line)
dest/corpus/handbook.pdf     the operations handbook, rendered from Markdown chapters
dest/eval/queries.jsonl      labelled queries (outside the corpus root, so not indexed)
dest/eval/qrels.tsv          relevance judgments over external ids
```

Writing is idempotent: a file is rewritten only when its bytes differ, so a
second call leaves contents, hashes and modification times untouched. The PDF is
rendered deterministically (fixed creation date, producer and file id), so the
same chapters always give the same bytes.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos

CORPUS_DIR = "corpus"
EVAL_DIR = "eval"
HANDBOOK_PDF = "handbook.pdf"
HANDBOOK_TITLE = "mdp Operations Handbook"
FIXED_DATE = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class SampleCorpus:
    """Where the sample corpus was written, and which files this call changed."""

    root: Path
    corpus_root: Path
    queries: Path
    qrels: Path
    changed: list[str] = field(default_factory=list)  # paths relative to ``root`` rewritten by this call

    @property
    def files(self) -> list[Path]:
        return [self.corpus_root / relpath for relpath in sample_corpus_files()]


def _data() -> Traversable:
    return resources.files("mdp").joinpath("sample_corpus")


def _sorted_children(folder: Traversable, suffix: str) -> list[Traversable]:
    children = [c for c in folder.iterdir() if c.is_file() and c.name.endswith(suffix)]
    return sorted(children, key=lambda c: c.name)


def _doc_files() -> list[Traversable]:
    return _sorted_children(_data().joinpath("docs"), ".md")


def _handbook_chapters() -> list[Traversable]:
    return _sorted_children(_data().joinpath("handbook"), ".md")


def sample_corpus_files() -> list[str]:
    """Relative paths (forward slashes) of every file under the corpus root, sorted."""
    paths = [f"docs/{doc.name}" for doc in _doc_files()]
    paths += ["faq.jsonl", HANDBOOK_PDF]
    return sorted(paths)


# --- handbook rendering ---------------------------------------------------------------------------


@dataclass
class _Block:
    kind: str  # "h1" | "h2" | "para" | "bullet"
    text: str


def _parse_markdown(text: str) -> list[_Block]:
    """A deliberately small Markdown reader: headings, paragraphs and '- ' bullets."""
    blocks: list[_Block] = []
    current: _Block | None = None

    def flush() -> None:
        nonlocal current
        if current is not None:
            blocks.append(current)
            current = None

    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped:
            flush()
        elif stripped.startswith("## "):
            flush()
            blocks.append(_Block("h2", stripped[3:].strip()))
        elif stripped.startswith("# "):
            flush()
            blocks.append(_Block("h1", stripped[2:].strip()))
        elif stripped.startswith("- "):
            flush()
            current = _Block("bullet", stripped[2:].strip())
        elif current is not None:
            current.text = f"{current.text} {stripped}"
        else:
            current = _Block("para", stripped)
    flush()
    return blocks


class _HandbookPDF(FPDF):
    def footer(self) -> None:
        if self.page_no() == 1:
            return
        self.set_y(-15)
        self.set_font("Helvetica", size=9)
        self.cell(0, 10, str(self.page_no()), align="C")


def _ascii(text: str, where: str) -> str:
    if not text.isascii():
        bad = next(ch for ch in text if not ch.isascii())
        raise ValueError(f"{where}: non-ASCII character {bad!r}; the PDF core fonts need plain ASCII")
    return text


def render_handbook(chapters: list[tuple[str, str]]) -> bytes:
    """Render ``(name, markdown)`` chapters into one PDF: a title page, then one chapter per page."""
    parsed = [(name, _parse_markdown(_ascii(text, name))) for name, text in chapters]
    pdf = _HandbookPDF(format="A4", unit="mm")
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_producer("mdp sample corpus")
    pdf.set_creator("mdp.sample")
    pdf.set_title(HANDBOOK_TITLE)
    pdf.set_author("mdp project")
    pdf.set_subject("Running, recovering, scaling, monitoring and upgrading an mdp deployment")
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.set_margins(20, 20, 20)

    pdf.add_page()
    pdf.set_font("Helvetica", style="B", size=26)
    pdf.ln(40)
    pdf.multi_cell(0, 12, HANDBOOK_TITLE, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(6)
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(
        0,
        7,
        "Procedures for the people who run the mdp document pipeline in production.",
        align="C",
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    pdf.ln(16)
    pdf.set_font("Helvetica", style="B", size=14)
    pdf.cell(0, 9, "Contents", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Helvetica", size=12)
    for number, (_, blocks) in enumerate(parsed, 1):
        title = next((b.text for b in blocks if b.kind == "h1"), f"Chapter {number}")
        pdf.cell(0, 8, f"{number}. {title}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    for blocks in (b for _, b in parsed):
        pdf.add_page()
        for block in blocks:
            if block.kind == "h1":
                pdf.set_font("Helvetica", style="B", size=20)
                pdf.multi_cell(0, 10, block.text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
                pdf.ln(4)
            elif block.kind == "h2":
                pdf.ln(2)
                pdf.set_font("Helvetica", style="B", size=14)
                pdf.multi_cell(0, 8, block.text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
                pdf.ln(1)
            elif block.kind == "bullet":
                pdf.set_font("Helvetica", size=11)
                pdf.set_x(pdf.l_margin + 5)
                pdf.multi_cell(0, 6, f"- {block.text}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
                pdf.ln(1)
            else:
                pdf.set_font("Helvetica", size=11)
                pdf.multi_cell(0, 6, block.text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
                pdf.ln(3)
    return bytes(pdf.output())


def handbook_pdf_bytes() -> bytes:
    """The bundled handbook chapters rendered to PDF bytes."""
    chapters = [(c.name, c.read_text(encoding="utf-8")) for c in _handbook_chapters()]
    if not chapters:
        raise FileNotFoundError("no handbook chapters found in mdp/sample_corpus/handbook")
    return render_handbook(chapters)


# --- writing ----------------------------------------------------------------------------------


def _write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` atomically unless ``path`` already holds exactly these bytes."""
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def sample_corpus_contents() -> dict[str, bytes]:
    """Every file ``write_sample_corpus`` writes, keyed by path relative to ``dest``."""
    data = _data()
    contents: dict[str, bytes] = {}
    for doc in _doc_files():
        contents[f"{CORPUS_DIR}/docs/{doc.name}"] = doc.read_bytes()
    contents[f"{CORPUS_DIR}/faq.jsonl"] = data.joinpath("faq.jsonl").read_bytes()
    contents[f"{CORPUS_DIR}/{HANDBOOK_PDF}"] = handbook_pdf_bytes()
    eval_dir = data.joinpath("eval")
    contents[f"{EVAL_DIR}/queries.jsonl"] = eval_dir.joinpath("queries.jsonl").read_bytes()
    contents[f"{EVAL_DIR}/qrels.tsv"] = eval_dir.joinpath("qrels.tsv").read_bytes()
    return contents


def write_sample_corpus(dest: str | Path, *, prune: bool = False) -> SampleCorpus:
    """Materialise the sample corpus under ``dest``; rewrites only files whose bytes differ.

    With ``prune=True`` files under ``dest/corpus`` that are not part of the sample
    (for example documents renamed in a newer release) are deleted, so they are
    not indexed; by default nothing is deleted.
    """
    root = Path(dest).resolve()
    changed = [rel for rel, data in sample_corpus_contents().items() if _write_if_changed(root / rel, data)]
    corpus_root = root / CORPUS_DIR
    if prune:
        expected = set(sample_corpus_files())
        for path in sorted(corpus_root.rglob("*")):
            relpath = path.relative_to(corpus_root).as_posix()
            if (path.is_file() or path.is_symlink()) and relpath not in expected:
                path.unlink()
                changed.append(f"{CORPUS_DIR}/{relpath}")
    return SampleCorpus(
        root=root,
        corpus_root=corpus_root,
        queries=root / EVAL_DIR / "queries.jsonl",
        qrels=root / EVAL_DIR / "qrels.tsv",
        changed=sorted(changed),
    )
