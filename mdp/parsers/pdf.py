"""PDF: text layers read by pdfminer (through unstructured) and pdfium, form field values,
and OCR with Tesseract for pages without text, each page scored for fidelity.

Order per page (docs/ingestion.md, "Text fidelity"):

1. pdfminer through unstructured's ``partition_pdf`` (typed elements: titles, lists, tables).
2. pdfium, only for pages whose text is suspect (unmapped glyphs, mojibake, implausible
   script mixes, or almost no text) or when pdfminer failed; a page takes pdfium's text when
   it scores clearly better. pdfium is ~50x faster than pdfminer, so this costs little.
3. Filled-in AcroForm and XFA field values are added to their pages (no extractor reads them).
4. OCR with Tesseract for image pages still without text, and for pages still unreadable,
   within the per-document time budget (``[parsing] ocr``, ``languages``, ``ocr_dpi``).

A page that stays unreadable is left out (listed in ``unreadable_pages``); a document whose
best text is unreadable overall is quarantined with a reason that names the problem and the fix.

Encrypted files are opened with pikepdf (an empty user password opens many; otherwise
``[parsing.passwords]``) and decrypted **into memory**: no decrypted copy is ever written to
disk, so none can outlive a worker that is killed mid-parse.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdp.fidelity import EMPTY, Fidelity, better, element_text, measure, screen_elements
from mdp.parsers import pdf_pages
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
OCR_OFF_FIX = "set [parsing] ocr = true (Tesseract) to read scanned pages"
OCR_TOOLS_FIX = (
    "install the OCR tools (`apt-get install tesseract-ocr poppler-utils`, "
    "or `brew install tesseract poppler`) "
    'or set [parsing] pdf_strategy = "fast"'
)
FONT_FIX = (
    "the PDF's fonts carry no usable Unicode map; export it again with embedded Unicode fonts (e.g. as PDF/A)"
)
_COMPLEX_MARK = "too complex for text extraction"
_FAILED_MARK = "PDF text extraction failed"
MIN_PAGE_CHARS = 20  # a page with less text than this and an image is treated as a scan
SUSPECT_MESS = 0.1  # a page's mess ratio above this sends it to pdfium too
OCR_RESERVE_S = 2.0  # time kept back from the budget for chunking after OCR
OCR_BUDGET_SHARE = 0.85  # share of [parsing] timeout_s that OCR may use, counted from the parse start


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


@dataclass
class _Input:
    """An opened PDF: where pdfminer and pdfium read it from, and pikepdf's view of it."""

    path: Path
    data: bytes | None = None  # the decrypted file, in memory only
    pdf: pikepdf.Pdf | None = None
    page_count: int = 0
    encrypted: bool = False
    open_error: str = ""

    def pdfminer_source(self) -> dict[str, Any]:
        return {"file": io.BytesIO(self.data)} if self.data is not None else {"filename": str(self.path)}

    def pdfium_source(self) -> Path | bytes:
        return self.data if self.data is not None else self.path


@dataclass
class _Page:
    number: int
    elements: list[Element] = field(default_factory=list)
    extractor: str = ""
    fidelity: Fidelity = EMPTY
    fields: list[tuple[str, str]] = field(default_factory=list)
    field_source: str = ""
    has_image: bool | None = None

    def take(self, extractor: str, elements: list[Element], fidelity: Fidelity) -> None:
        self.extractor, self.elements, self.fidelity = extractor, elements, fidelity


class PdfParser:
    name = "unstructured-pdf"
    formats = ("pdf",)
    extensions = (".pdf",)

    def warmup(self) -> None:
        ensure_unstructured_ready()
        import pikepdf  # noqa: F401
        import pypdfium2  # noqa: F401

        measure("Warm-up: ftfy and charset-normalizer load once, in the fork server.")
        with contextlib.suppress(Exception):  # only a speed-up: a real failure shows on a real file
            _prime_partition_pdf()

    def parse(self, path: Path, context: ParseContext) -> Iterator[ParsedDocument | ParseFailure]:
        ensure_unstructured_ready(context.parsing.sentence_splitter)
        started = time.monotonic()
        content_hash = context.file_hash(path)

        def fail(reason: str) -> ParseFailure:
            return ParseFailure(reason, external_id=context.relpath, content_hash=content_hash)

        with contextlib.ExitStack() as stack:
            opened = self._open(path, context, stack)
            if isinstance(opened, ParseFailure):
                yield fail(opened.reason)
                return
            result = _Extraction(opened, context, started).run()
        if isinstance(result, ParseFailure):
            yield fail(result.reason)
            return
        elements, metadata = result
        yield ParsedDocument(context.relpath, elements, content_hash, metadata)

    def _open(self, path: Path, context: ParseContext, stack: contextlib.ExitStack) -> _Input | ParseFailure:
        """Check encryption and count pages; decrypt into memory when needed."""
        import pikepdf

        opened = _Input(path)
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
        except Exception as exc:  # qpdf could not repair it; pdfminer or pdfium may still read it
            opened.open_error = str(exc)
            return opened
        stack.enter_context(pdf)
        opened.pdf = pdf
        opened.page_count = len(pdf.pages)
        if pdf.is_encrypted:
            opened.encrypted = True
            # decrypt once with qpdf (pdfminer's own crypto misses some variants), into memory only
            buffer = io.BytesIO()
            try:
                pdf.save(buffer)  # saving without encryption= removes the encryption
            except Exception as exc:
                return ParseFailure(f"corrupt: cannot decrypt: {exc}")
            opened.data = buffer.getvalue()
        return opened


class _Extraction:
    """One PDF's way through the extractors (see the module docstring)."""

    def __init__(self, source: _Input, context: ParseContext, started: float) -> None:
        self.source = source
        self.context = context
        self.parsing = context.parsing
        self.started = started
        self.strategy = self.parsing.pdf_strategy
        self.primary = "pdfminer" if self.strategy == "fast" else f"unstructured-{self.strategy}"
        self.min_fidelity = self.parsing.min_text_fidelity
        self.pages: dict[int, _Page] = {}
        self.metadata: dict[str, Any] = {}
        self.errors: list[str] = []
        self.complex = False
        self._pdfium: Any = None
        self.ocr = _OcrOutcome()

    # -- steps ---------------------------------------------------------------------------

    def run(self) -> tuple[list[Element], dict[str, Any]] | ParseFailure:
        try:
            return self._run()
        finally:
            if self._pdfium:
                self._pdfium.close()

    def _run(self) -> tuple[list[Element], dict[str, Any]] | ParseFailure:
        elements = self._pdfminer()
        if isinstance(elements, ParseFailure):
            return elements
        self._set_pages(elements, self.primary)
        if not self.pages and not self._count_pages_with_pdfium():
            return ParseFailure(f"corrupt: {self._error_detail() or 'no pages could be read'}")
        suspect = [p for p in self.pages.values() if self._suspect(p.fidelity)]
        if suspect:
            self._try_pdfium(suspect)
        if self.complex and not any(p.fidelity.readable(self.min_fidelity) for p in self.pages.values()):
            self._pdfminer_without_complexity_check()
        self._add_form_values()
        if self.strategy == "fast":
            self._ocr_where_needed()
        return self._compose()

    def _pdfminer(self) -> list[Element] | ParseFailure:
        from unstructured.partition.pdf import partition_pdf

        def run() -> list[Element]:
            return list(
                partition_pdf(
                    **self.source.pdfminer_source(),
                    strategy=self.strategy,
                    languages=list(self.parsing.languages),
                )
            )

        try:
            with _capture_unstructured_logs() as logs:
                elements = run()
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            lowered = message.lower()
            if self.strategy != "fast" and any(
                word in lowered for word in ("tesseract", "poppler", "pdfinfo", "pdftoppm")
            ):
                return ParseFailure(
                    f"OCR unavailable for strategy {self.strategy!r} ({message}) — {OCR_TOOLS_FIX}"
                )
            self.errors.append(message)
            return []
        if not element_texts(elements):
            if logs.saw(_FAILED_MARK):
                self.errors.append(logs.failure_detail() or "text extraction failed")
            self.complex = logs.saw(_COMPLEX_MARK) and self.strategy in ("fast", "auto")
        return elements

    def _pdfminer_without_complexity_check(self) -> None:
        """unstructured skips PDFs its heuristic calls too complex; when pdfium found nothing
        readable either, read them after all (the worker's budgets bound the cost)."""
        from unstructured.partition.pdf import partition_pdf

        try:
            with _capture_unstructured_logs(), _complexity_check_disabled():
                elements = list(
                    partition_pdf(
                        **self.source.pdfminer_source(),
                        strategy=self.strategy,
                        languages=list(self.parsing.languages),
                    )
                )
        except Exception as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return
        self.metadata["complexity_check_skipped"] = True
        for number, page_elements in _by_page(elements).items():
            page = self._page(number)
            fidelity = measure(element_text(page_elements))
            if better(fidelity, page.fidelity):
                page.take(self.primary, page_elements, fidelity)

    def _set_pages(self, elements: list[Element], extractor: str) -> None:
        for number in range(1, self.source.page_count + 1):
            self._page(number)
        for number, page_elements in _by_page(elements).items():
            self._page(number).take(extractor, page_elements, measure(element_text(page_elements)))

    def _page(self, number: int) -> _Page:
        if number not in self.pages:
            self.pages[number] = _Page(number)
        return self.pages[number]

    def _suspect(self, fidelity: Fidelity) -> bool:
        return (
            fidelity.characters < MIN_PAGE_CHARS
            or fidelity.unmapped > 0
            or fidelity.mojibake > 0
            or fidelity.mess > SUSPECT_MESS
            or not fidelity.readable(self.min_fidelity)
        )

    def _pdfium_document(self) -> Any:
        if self._pdfium is None:
            try:
                self._pdfium = pdf_pages.open_pdfium(self.source.pdfium_source())
            except Exception as exc:
                self.errors.append(f"pdfium: {exc}")
                self._pdfium = False
        return self._pdfium or None

    def _count_pages_with_pdfium(self) -> bool:
        document = self._pdfium_document()
        if document is None:
            return False
        for number in range(1, len(document) + 1):
            self._page(number)
        return bool(self.pages)

    def _try_pdfium(self, pages: list[_Page]) -> None:
        document = self._pdfium_document()
        if document is None:
            return
        for page in pages:
            if page.number > len(document):
                continue
            try:
                text = pdf_pages.pdfium_text(document, page.number)
            except Exception as exc:
                self.errors.append(f"pdfium page {page.number}: {exc}")
                continue
            fidelity = measure(text)
            if better(fidelity, page.fidelity):
                elements = pdf_pages.text_elements(pdf_pages.paragraphs(text), page.number)
                page.take("pdfium", elements, fidelity)

    def _add_form_values(self) -> None:
        pdf = self.source.pdf
        if pdf is None:
            return
        try:
            values = pdf_pages.acroform_values(pdf)
            xfa = pdf_pages.xfa_values(pdf)
        except Exception as exc:  # a malformed form never costs the page text
            self.errors.append(f"form fields: {exc}")
            return
        for number, lines in values.items():
            page = self._page(number)
            page.fields, page.field_source = lines, "acroform"
        if xfa:
            page = self._page(1)
            page.fields, page.field_source = page.fields + xfa, "xfa" if not page.fields else "acroform+xfa"

    # -- OCR -----------------------------------------------------------------------------

    def _has_image(self, page: _Page) -> bool:
        if page.has_image is None:
            pdf = self.source.pdf
            if pdf is None or page.number > len(pdf.pages):
                page.has_image = True  # unknown: let OCR look
            else:
                page.has_image = pdf_pages.page_has_image(pdf.pages[page.number - 1])
        return page.has_image

    def _ocr_candidates(self) -> list[_Page]:
        out = []
        for page in sorted(self.pages.values(), key=lambda p: p.number):
            fidelity = page.fidelity
            if fidelity.characters >= MIN_PAGE_CHARS and fidelity.readable(self.min_fidelity):
                continue
            if fidelity.characters >= MIN_PAGE_CHARS or self._has_image(page):
                out.append(page)
        return out

    def _ocr_where_needed(self) -> None:
        from mdp import ocr

        candidates = self._ocr_candidates()
        self.ocr.needed = [p.number for p in candidates]
        if not candidates:
            return
        if not self.parsing.ocr:
            self.ocr.unavailable, self.ocr.fix = f"OCR disabled; {OCR_OFF_FIX}", OCR_OFF_FIX
            return
        tesseract = ocr.find_tesseract()
        if tesseract is None:
            self.ocr.unavailable = f"OCR unavailable: tesseract not found — {ocr.INSTALL_HINT}"
            self.ocr.fix = ocr.INSTALL_HINT
            return
        wanted = list(self.parsing.languages) or ["eng"]
        languages = [code for code in wanted if code in tesseract.languages]
        missing = ocr.missing_languages(tesseract, wanted)
        if missing:
            packages = " ".join(ocr.language_package(code) for code in missing)
            self.ocr.missing_languages = (
                f"Tesseract has no data for {', '.join(missing)} (apt-get install {packages})"
            )
        if not languages:
            self.ocr.unavailable = f"OCR unavailable: {self.ocr.missing_languages}"
            self.ocr.fix = f"install the Tesseract data ({self.ocr.missing_languages})"
            return
        document = self._pdfium_document()
        if document is None:
            self.ocr.unavailable = f"OCR unavailable: pdfium cannot render the pages ({self._error_detail()})"
            return
        self.ocr.languages = languages
        deadline = self.started + self.parsing.timeout_s * OCR_BUDGET_SHARE - OCR_RESERVE_S
        for page in candidates:
            now = time.monotonic()
            average = sum(self.ocr.seconds) / len(self.ocr.seconds) if self.ocr.seconds else 0.0
            if now + average > deadline or now >= deadline:
                self.ocr.skipped.append(page.number)
                continue
            try:
                image = pdf_pages.render_png(document, page.number, self.parsing.ocr_dpi)
                result = ocr.ocr_image(image, languages, deadline - now, self.parsing.ocr_dpi)
            except ocr.OcrError as exc:
                if "longer than" in str(exc):
                    self.ocr.skipped.append(page.number)
                    continue
                self.ocr.errors.append(f"page {page.number}: {exc}")
                continue
            except Exception as exc:  # pdfium could not render this page
                self.ocr.errors.append(f"page {page.number}: {type(exc).__name__}: {exc}")
                continue
            finally:
                self.ocr.seconds.append(time.monotonic() - now)
            fidelity = measure(result.text)
            self.ocr.read.append(page.number)
            if result.words and result.confidence < self.parsing.ocr_min_confidence:
                self.ocr.low_confidence.append((page.number, result.confidence))
                continue
            if fidelity.readable(self.min_fidelity) and better(fidelity, page.fidelity):
                page.take("ocr", pdf_pages.text_elements(result.paragraphs, page.number), fidelity)
                self.ocr.used[page.number] = result.confidence

    # -- the result ----------------------------------------------------------------------

    def _error_detail(self) -> str:
        errors = [*self.errors, *([self.source.open_error] if self.source.open_error else [])]
        return "; ".join(dict.fromkeys(errors))

    def _compose(self) -> tuple[list[Element], dict[str, Any]] | ParseFailure:
        pages = sorted(self.pages.values(), key=lambda p: p.number)
        unreadable = [
            p for p in pages if p.fidelity.characters and not p.fidelity.readable(self.min_fidelity)
        ]
        readable_chars = sum(p.fidelity.characters for p in pages if p not in unreadable)
        unreadable_chars = sum(p.fidelity.characters for p in unreadable)
        has_fields = any(p.fields for p in pages)
        if unreadable and unreadable_chars > readable_chars:
            return ParseFailure(self._unreadable_reason(unreadable))
        if not readable_chars and not has_fields:
            return ParseFailure(self._no_text_reason(len(pages)))
        skipped = self.ocr.skipped
        if skipped and len(skipped) * 2 >= len(pages):
            return ParseFailure(self._ocr_budget_reason())

        elements: list[Element] = []
        extractor_pages: dict[str, list[int]] = {}
        field_count = 0
        for page in pages:
            if page not in unreadable and page.elements:
                elements.extend(page.elements)
                extractor_pages.setdefault(page.extractor, []).append(page.number)
            shown = element_text(page.elements) if page not in unreadable else ""
            lines = pdf_pages.field_lines(page.fields, shown)
            if lines:
                elements.extend(pdf_pages.text_elements(lines, page.number, kind="field"))
                extractor_pages.setdefault(page.field_source, []).append(page.number)
                field_count += len(lines)
        if not elements:
            return ParseFailure(self._no_text_reason(len(pages)))
        metadata = dict(self.metadata)
        metadata["page_count"] = len(pages)
        if self.source.encrypted:
            metadata["encrypted"] = True
        metadata["extractor"] = max(extractor_pages, key=lambda name: len(extractor_pages[name]))
        if len(extractor_pages) > 1:
            metadata["extractor_pages"] = extractor_pages
        if field_count:
            metadata["form_fields"] = field_count
        if self.ocr.used:
            metadata["ocr_pages"] = sorted(self.ocr.used)
            metadata["ocr_confidence"] = round(sum(self.ocr.used.values()) / len(self.ocr.used), 1)
            metadata["ocr_languages"] = "+".join(self.ocr.languages)
        if skipped:
            metadata["ocr_pages_skipped"] = skipped  # over the time budget
        if unreadable:
            metadata["unreadable_pages"] = [p.number for p in unreadable]
        screening = screen_elements(elements, self.min_fidelity, fix=FONT_FIX)
        if screening.reason:
            return ParseFailure(screening.reason)
        metadata.update(screening.metadata)
        return [e for e in elements if getattr(e, "text", "").strip()], metadata

    def _unreadable_reason(self, unreadable: list[_Page]) -> str:
        worst = min(unreadable, key=lambda p: p.fidelity.score)
        tried = sorted({self.primary, "pdfium", *(["ocr"] if self.ocr.read else [])})
        where = _page_list([p.number for p in unreadable])
        if self.ocr.fix:
            fix = f"{self.ocr.fix}, or {FONT_FIX}"
        elif self.ocr.skipped:
            fix = f"raise [parsing] timeout_s so OCR can read every page, or {FONT_FIX}"
        else:
            fix = FONT_FIX
        return f"unreadable text on {where} ({', '.join(tried)} tried): {worst.fidelity.problem()} — {fix}"

    def _no_text_reason(self, page_count: int) -> str:
        if self.errors and not self.ocr.needed:
            return f"corrupt: {self._error_detail()}"
        if self.source.open_error and not self.ocr.needed:
            return f"corrupt: {self.source.open_error}"
        if page_count == 0:
            return "no text extracted: the PDF has no pages"
        scans = len(self.ocr.needed)
        if not scans:
            return (
                f"no text extracted: none of the {page_count} page(s) has a text layer or an image "
                "(blank or vector-only pages)"
            )
        if self.ocr.unavailable:
            return f"no text layer (scanned, {scans} image page(s)) — {self.ocr.unavailable}"
        if self.ocr.skipped and not self.ocr.read:
            return self._ocr_budget_reason()
        languages = "+".join(self.ocr.languages)
        detail = ""
        if self.ocr.low_confidence:
            mean = sum(c for _, c in self.ocr.low_confidence) / len(self.ocr.low_confidence)
            detail = f" (mean word confidence {mean:.0f} < [parsing] ocr_min_confidence)"
        if self.ocr.errors:
            detail += f" ({self.ocr.errors[0]})"
        hint = self.ocr.missing_languages or (
            f"if the text is not in {languages}, set [parsing] languages and install its Tesseract data "
            "(apt-get install tesseract-ocr-<lang>)"
        )
        return (
            f"no text found: OCR ({languages}) of {scans} scanned page(s) read no readable text{detail} — "
            f"the pages may hold only pictures; {hint}"
        )

    def _ocr_budget_reason(self) -> str:
        done = len(self.ocr.read)
        spent = sum(self.ocr.seconds)
        total = len(self.ocr.needed)
        per_page = spent / done if done else 0.0
        needed = f"; about {per_page * total / OCR_BUDGET_SHARE + 10:.0f} s needed" if done else ""
        return (
            f"OCR ran out of time: {done} of {total} scanned page(s) read in {spent:.0f} s within "
            f"[parsing] timeout_s = {self.parsing.timeout_s:g} — raise timeout_s{needed}, "
            "or lower [parsing] ocr_dpi"
        )


@dataclass
class _OcrOutcome:
    needed: list[int] = field(default_factory=list)
    read: list[int] = field(default_factory=list)
    used: dict[int, float] = field(default_factory=dict)  # page -> mean word confidence
    skipped: list[int] = field(default_factory=list)
    low_confidence: list[tuple[int, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    missing_languages: str = ""
    unavailable: str = ""  # why OCR did not run, for reasons
    fix: str = ""  # what would make it run


def _by_page(elements: list[Element]) -> dict[int, list[Element]]:
    pages: dict[int, list[Element]] = {}
    for element in elements:
        if not (getattr(element, "text", None) or "").strip():
            continue
        number = getattr(element.metadata, "page_number", None)
        pages.setdefault(number if isinstance(number, int) and number > 0 else 1, []).append(element)
    return pages


def _page_list(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:8])
    more = f" and {len(numbers) - 8} more" if len(numbers) > 8 else ""
    return f"page{'s' if len(numbers) > 1 else ''} {shown}{more}"
