"""PDF through unstructured's ``partition_pdf``, with the traps of real files handled.

- Encrypted files are detected with pikepdf. An empty user password opens many of them;
  otherwise the password comes from ``[parsing.passwords]`` and the file is decrypted
  into a temporary copy that unstructured reads. No password: a quarantine reason.
- With ``strategy="fast"`` unstructured skips text extraction for PDFs its complexity
  heuristic flags (dense vector graphics) and returns nothing. A file with a text layer
  must not end empty, so we retry with that heuristic off (the worker's time and
  memory budgets bound the cost).
- Zero elements always becomes a reason: scanned pages without OCR, extraction failure
  ("corrupt: ..."), or no text at all.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdp.parsers.base import (
    ParseContext,
    ParsedDocument,
    ParseFailure,
    element_texts,
    ensure_unstructured_ready,
)

if TYPE_CHECKING:
    import pikepdf
    from unstructured.documents.elements import Element

PASSWORD_FIX = "add it under [parsing.passwords] in mdp.toml"
OCR_FIX = 'set [parsing] pdf_strategy = "ocr_only" and install tesseract-ocr to read it'
OCR_TOOLS_FIX = (
    "install the OCR tools (`apt-get install tesseract-ocr poppler-utils`, "
    "or `brew install tesseract poppler`) "
    'or set [parsing] pdf_strategy = "fast"'
)
_COMPLEX_MARK = "too complex for text extraction"
_FAILED_MARK = "PDF text extraction failed"


class _LogCapture(logging.Handler):
    """Collects unstructured's own log lines: its failures are logged, not raised."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "unstructured":
            with contextlib.suppress(Exception):
                self.messages.append(record.getMessage())

    def saw(self, mark: str) -> bool:
        return any(mark in m for m in self.messages)

    def failure_detail(self) -> str:
        """unstructured logs the exception (debug) right before 'PDF text extraction failed'."""
        for i, message in enumerate(self.messages):
            if _FAILED_MARK in message:
                before = [m for m in self.messages[:i] if m.strip()]
                return before[-1].removeprefix("is_pdf_too_complex check failed: ") if before else message
        return ""


@contextlib.contextmanager
def _capture_unstructured_logs() -> Iterator[_LogCapture]:
    logger = logging.getLogger("unstructured")
    trace = logging.getLogger("unstructured.trace")
    handler = _LogCapture()
    old_level, old_trace = logger.level, trace.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    trace.setLevel(logging.WARNING)  # its per-element DETAIL lines are costly and useless here
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        trace.setLevel(old_trace)


@contextlib.contextmanager
def _complexity_check_disabled() -> Iterator[None]:
    import unstructured.partition.pdf as updf

    original = updf.is_pdf_too_complex
    updf.is_pdf_too_complex = lambda *args, **kwargs: False  # type: ignore[assignment]
    try:
        yield
    finally:
        updf.is_pdf_too_complex = original  # type: ignore[assignment]


def _resources_have_image(resources: Any, depth: int = 0) -> bool:
    """Any image XObject in a resource dictionary, looking into form XObjects (bounded depth)."""
    import pikepdf

    xobjects = resources.get("/XObject", {}) if resources is not None else {}
    for key in list(xobjects.keys()):
        xobj = xobjects[key]
        subtype = xobj.get("/Subtype")
        if subtype == pikepdf.Name.Image:
            return True
        if (
            subtype == pikepdf.Name.Form
            and depth < 3
            and _resources_have_image(xobj.get("/Resources"), depth + 1)
        ):
            return True
    return False


def _count_image_pages(path: Path) -> int:
    """Pages that draw an image (a scan); 0 when the file cannot be opened without a password."""
    import pikepdf

    try:
        with pikepdf.open(path) as pdf:
            return sum(1 for page in pdf.pages if _has_image(page))
    except Exception:
        return 0


def _has_image(page: pikepdf.Page) -> bool:
    import pikepdf

    try:
        if _resources_have_image(page.obj.get("/Resources"), 0):
            return True
        contents = page.obj.get("/Contents")
        if contents is None:
            return False
        streams = list(contents) if isinstance(contents, pikepdf.Array) else [contents]
        for stream in streams[:16]:  # inline images: BI ... ID ... EI
            data = stream.read_bytes()
            if b"BI" in data and b"EI" in data:
                return True
    except Exception:  # a malformed resource dictionary is not an image
        return False
    return False


_primed = False


def _prime_partition_pdf() -> None:
    """Parse a tiny generated PDF once, so the first real file does not pay for lazy imports,
    pdfminer's font set-up and spaCy's first call (~0.2 s, and ~9 % of a run's parse time on
    the shared PDFs). Done in the fork server, every worker inherits the result."""
    global _primed
    if _primed:
        return
    from fpdf import FPDF
    from unstructured.partition.pdf import partition_pdf

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=14)
    pdf.cell(text="Warm-up")
    pdf.ln(12)
    pdf.set_font("helvetica", size=11)
    pdf.multi_cell(w=0, text="This paragraph primes the parser before the first file arrives. " * 3)
    with tempfile.TemporaryDirectory(prefix="mdp-prime-") as tmp:
        target = Path(tmp) / "prime.pdf"
        target.write_bytes(bytes(pdf.output()))
        partition_pdf(filename=str(target), strategy="fast", languages=["eng"])
    _primed = True


class PdfParser:
    name = "unstructured-pdf"
    formats = ("pdf",)
    extensions = (".pdf",)

    def warmup(self) -> None:
        ensure_unstructured_ready()
        import pikepdf  # noqa: F401

        with contextlib.suppress(Exception):  # only a speed-up: a real failure shows on a real file
            _prime_partition_pdf()

    def parse(self, path: Path, context: ParseContext) -> Iterator[ParsedDocument | ParseFailure]:
        ensure_unstructured_ready(context.parsing.sentence_splitter)
        content_hash = context.file_hash(path)

        def fail(reason: str) -> ParseFailure:
            return ParseFailure(reason, external_id=context.relpath, content_hash=content_hash)

        with tempfile.TemporaryDirectory(prefix="mdp-pdf-") as tmp:
            opened = self._open(path, context, Path(tmp))
            if isinstance(opened, ParseFailure):
                yield fail(opened.reason)
                return
            target, info = opened
            result = self._partition(target, context, info)
        if isinstance(result, ParseFailure):
            yield fail(result.reason)
            return
        elements, extra = result
        info.update(extra)
        info.pop("open_error", None)
        yield ParsedDocument(context.relpath, elements, content_hash, info)

    # -- steps -------------------------------------------------------------------------------

    def _open(
        self, path: Path, context: ParseContext, tmp: Path
    ) -> tuple[Path, dict[str, Any]] | ParseFailure:
        """Check encryption and count pages; decrypt to ``tmp`` when needed."""
        import pikepdf

        info: dict[str, Any] = {}
        password = context.password()
        try:
            pdf = pikepdf.open(path)
        except pikepdf.PasswordError:
            if password is None:
                return ParseFailure(f"encrypted: password required — {PASSWORD_FIX}")
            try:
                pdf = pikepdf.open(path, password=password)
            except pikepdf.PasswordError:
                return ParseFailure(
                    f"encrypted: the configured password does not open it — fix it under [parsing.passwords] "
                    f"in mdp.toml (key {context.relpath!r} or its file name)"
                )
            except Exception as exc:
                return ParseFailure(f"corrupt: {exc}")
        except Exception as exc:  # qpdf could not repair it; pdfminer may still read it
            info["open_error"] = str(exc)
            return path, info
        with pdf:
            info["page_count"] = len(pdf.pages)
            if not pdf.is_encrypted:
                return path, info
            info["encrypted"] = True
            # decrypt once with qpdf: pdfminer's own crypto misses some variants
            decrypted = tmp / "decrypted.pdf"
            try:
                pdf.save(decrypted)  # saving without encryption= removes the encryption
            except Exception as exc:
                return ParseFailure(f"corrupt: cannot decrypt: {exc}")
        return decrypted, info

    def _partition(
        self, target: Path, context: ParseContext, info: dict[str, Any]
    ) -> tuple[list[Element], dict[str, Any]] | ParseFailure:
        from unstructured.partition.pdf import partition_pdf

        strategy = context.parsing.pdf_strategy
        extra: dict[str, Any] = {}

        def run() -> list[Element]:
            return list(
                partition_pdf(
                    filename=str(target), strategy=strategy, languages=list(context.parsing.languages)
                )
            )

        try:
            with _capture_unstructured_logs() as logs:
                elements = run()
                if not element_texts(elements) and logs.saw(_COMPLEX_MARK) and strategy in ("fast", "auto"):
                    with _complexity_check_disabled():
                        elements = run()
                    extra["complexity_check_skipped"] = True
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            lowered = message.lower()
            if any(word in lowered for word in ("tesseract", "poppler", "pdfinfo", "pdftoppm")):
                return ParseFailure(
                    f"OCR unavailable for strategy {strategy!r} ({message}) — {OCR_TOOLS_FIX}"
                )
            return ParseFailure(f"corrupt: {message}")

        if element_texts(elements):
            return elements, extra
        if logs.saw(_FAILED_MARK):
            return ParseFailure(f"corrupt: {logs.failure_detail() or 'text extraction failed'}")
        if "open_error" in info:
            return ParseFailure(f"corrupt: {info['open_error']}")
        pages = info.get("page_count", 0)
        if pages == 0:
            return ParseFailure("no text extracted: the PDF has no pages")
        if strategy == "fast":
            # Only now look for images: scanning every page's resources costs ~10 % of a parse,
            # and a PDF that gave text never needs it.
            if _count_image_pages(target):
                return ParseFailure(f"no text layer (scanned) — OCR disabled; {OCR_FIX}")
            return ParseFailure(
                f"no text extracted: none of the {pages} page(s) has a text layer or an image "
                f"(blank or vector-only pages); if it is a scan, {OCR_FIX}"
            )
        return ParseFailure(f"no text extracted: strategy {strategy!r} found no text on {pages} page(s)")
