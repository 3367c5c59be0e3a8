"""The 55 real-world PDFs in ../shared/data/pdfs through discovery and the parse workers.

Every file must end as chunks or as a quarantine reason, never a crash, hang or silent
empty result. One PDF per manifest category is checked for the right kind of outcome.
"""

from __future__ import annotations

import csv
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
            (_, chunks) = outcome.documents[0]
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
            assert reason.startswith(("encrypted: password required", "no text layer (scanned)")), (
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
        assert reason.startswith("no text layer (scanned) — OCR disabled"), (name, reason)
    elif category == "encrypted":
        assert outcome.chunk_count > 0 or reason.startswith(("encrypted:", "no text layer")), (name, reason)
    elif is_broken(category):
        assert outcome.chunk_count > 0 or reason.startswith("corrupt: "), (name, reason)
    else:  # text layers of every other kind: forms, columns, non-Latin, OCR layers, rotated...
        assert outcome.chunk_count > 0, (name, reason)
        pages = {p for _, chunks in outcome.documents for c in chunks for p in c.pages}
        assert pages, name
