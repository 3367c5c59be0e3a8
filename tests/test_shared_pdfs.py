"""The 55 real-world PDFs in ../shared/data/pdfs through discovery and the parse workers.

Every file must end as chunks or as a quarantine reason, never a crash, hang or silent
empty result. One PDF per manifest category is checked for the right kind of outcome.
"""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import pytest

from mdp.config import MdpConfig, ParsingConfig, SourceConfig
from mdp.isolation import FileOutcome, process_files
from mdp.parsers import ParseContext, ParseFailure, get_parser
from mdp.sources import discover

PDFS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pdfs"
if not (PDFS / "MANIFEST.tsv").exists():
    pytest.skip(
        f"needs the shared PDF corpus at {PDFS} (MANIFEST.tsv + 55 PDFs beside the repo); absent here",
        allow_module_level=True,
    )

with (PDFS / "MANIFEST.tsv").open(newline="", encoding="utf-8") as fh:
    MANIFEST = {row["file"]: row for row in csv.DictReader(fh, delimiter="\t")}
CATEGORIES: dict[str, str] = {}
for name, row in sorted(MANIFEST.items()):
    CATEGORIES.setdefault(row["category"], name)

PASSWORD_FILE = "unst_password.pdf"  # user password "password" per the manifest
SCANNED = {"image-only", "scanned-image-only"}
TESSERACT = shutil.which("tesseract") is not None
pytestmark = pytest.mark.slow


def is_broken(category: str) -> bool:
    return "broken" in category or "hostile" in category


@pytest.fixture(scope="module")
def outcomes() -> dict[str, FileOutcome]:
    source = SourceConfig(name="shared", root=PDFS, include=["*.pdf"])
    # a generous budget: this is about outcomes, not speed, on a machine shared with other work
    parsing = ParsingConfig(passwords={PASSWORD_FILE: "password"}, timeout_s=900)
    config = MdpConfig(sources=[source], parsing=parsing)
    found = discover(source, parsing)
    assert found.refused == []
    assert len(found.files) == len(MANIFEST) == 55
    results = {o.file.relpath: o for o in process_files(found.files, config)}
    assert len(results) == 55
    return results


def reason_of(outcome: FileOutcome) -> str:
    return "; ".join(q.reason for q in outcome.quarantine)


def test_every_pdf_ends_as_chunks_or_a_reason(outcomes: dict[str, FileOutcome]) -> None:
    for name, outcome in outcomes.items():
        assert outcome.discovered == 1, name  # one document per PDF: chunked or quarantined
        if outcome.documents:
            chunks = outcome.documents[0].chunks
            assert chunks and all(c.text.strip() and c.token_count <= 256 for c in chunks), name
        else:
            (record,) = outcome.quarantine
            assert record.reason and record.stage == "parse", name


def test_text_pdfs_without_password_get_chunks(outcomes: dict[str, FileOutcome]) -> None:
    text = [n for n, row in MANIFEST.items() if row["category"].startswith("text")]
    assert len(text) >= 7
    for name in text:
        assert outcomes[name].chunk_count > 0, (name, reason_of(outcomes[name]))


def test_configured_password_opens_the_encrypted_pdf(outcomes: dict[str, FileOutcome]) -> None:
    assert outcomes[PASSWORD_FILE].chunk_count > 0, reason_of(outcomes[PASSWORD_FILE])
    for name, row in MANIFEST.items():
        if row["category"] == "encrypted" and not outcomes[name].documents:
            reason = reason_of(outcomes[name])
            assert reason.startswith(("encrypted: password required", "no text layer (scanned")), (
                name,
                reason,
            )


def test_wrong_password_is_a_reason() -> None:
    context = ParseContext("shared", PDFS, PASSWORD_FILE, ParsingConfig(passwords={PASSWORD_FILE: "wrong"}))
    (item,) = get_parser("pdf").parse(PDFS / PASSWORD_FILE, context)
    assert isinstance(item, ParseFailure) and "configured password does not open it" in item.reason


@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_one_pdf_per_category(category: str, outcomes: dict[str, FileOutcome]) -> None:
    name = CATEGORIES[category]
    outcome = outcomes[name]
    reason = reason_of(outcome)
    if category in SCANNED:
        if TESSERACT:
            assert outcome.chunk_count > 0 or reason.startswith("no text found: OCR"), (name, reason)
        else:
            assert "OCR unavailable: tesseract not found" in reason, (name, reason)
    elif category == "encrypted":
        assert outcome.chunk_count > 0 or reason.startswith(("encrypted:", "no text layer")), (name, reason)
    elif is_broken(category):
        assert outcome.chunk_count > 0 or reason.startswith("corrupt: "), (name, reason)
    else:  # text layers of every other kind: forms, columns, non-Latin, OCR layers, rotated...
        assert outcome.chunk_count > 0, (name, reason)
        pages = {p for d in outcome.documents for c in d.chunks for p in c.pages}
        assert pages, name


GARBAGE = re.compile(r"\(cid:\d+\)|\ufffd")


def test_no_chunk_holds_unmapped_glyphs_and_counts_add_up(outcomes: dict[str, FileOutcome]) -> None:
    """pdfminer gives (cid:N) runs for 7 of these PDFs (2,742 in GeoTopo alone): none may be indexed."""
    garbage = [
        (name, c.text[:80])
        for name, outcome in outcomes.items()
        for d in outcome.documents
        for c in d.chunks
        if GARBAGE.search(c.text)
    ]
    assert not garbage
    chunked = sum(len(o.documents) for o in outcomes.values())
    quarantined = sum(len(o.quarantine) for o in outcomes.values())
    assert chunked + quarantined == 55
    for outcome in outcomes.values():
        for d in outcome.documents:
            assert all(c.metadata.get("extractor") for c in d.chunks)


def test_geotopo_is_readable_german(outcomes: dict[str, FileOutcome]) -> None:
    outcome = outcomes["pysf_GeoTopo-komprimiert.pdf"]
    assert outcome.documents, reason_of(outcome)
    (chunked,) = outcome.documents
    document = chunked.document
    text = " ".join(c.text for c in chunked.chunks)
    for word in ("Topologie", "Mannigfaltigkeit", "Überlagerung", "für", "Homöomorphismus"):
        assert word in text, word
    assert document.metadata["extractor"] == "pdfium" and document.metadata["text_fidelity"] >= 0.9


def test_form_values_are_indexed(outcomes: dict[str, FileOutcome]) -> None:
    chunks = outcomes["pysf_libreoffice-form.pdf"].documents[0].chunks
    assert "First Name: Alice" in " ".join(c.text for c in chunks)


@pytest.mark.skipif(not TESSERACT, reason="tesseract not installed (make setup installs it as root)")
def test_scans_are_read_by_ocr(outcomes: dict[str, FileOutcome]) -> None:
    scans = [name for name, row in MANIFEST.items() if row["category"] in SCANNED]
    assert len(scans) == 4
    read = {name: outcomes[name] for name in [*scans, "pdfminer_enc-no-id.pdf"]}
    # the CCITT file's only page is a 4x4 pt picture without a word on it
    assert reason_of(read.pop("pysf_imagemagick-CCITTFaxDecode.pdf")).startswith("no text found: OCR")
    for name, outcome in read.items():
        assert outcome.chunk_count > 0, (name, reason_of(outcome))
        (chunked,) = outcome.documents
        document = chunked.document
        assert document.metadata["extractor"] == "ocr" and document.metadata["ocr_confidence"] >= 50, name
    lorem = " ".join(c.text for c in outcomes["unst_loremipsum-flat.pdf"].documents[0].chunks)
    assert "Lorem ipsum dolor sit amet" in lorem
