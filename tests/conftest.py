"""Shared fixtures. Tests use real components: the MLX encoder, LanceDB on disk, unstructured."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from mdp.runtime import configure_process

configure_process()  # the test process is an entry point too: telemetry off before any library loads

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or a skip that says what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the shared data folder beside the repo); absent here")
    return path


@pytest.fixture(scope="session")
def encoder():
    from mdp.encoder import SentenceEncoder

    return SentenceEncoder()


# 2 Markdown + text + HTML + PDF + 4 JSONL lines = 9 documents; the line that is not JSON is quarantined.
TINY_DOCUMENTS = 9
TINY_QUARANTINED = 1


def write_tiny_corpus(root: Path) -> None:
    """A small mixed-format corpus: Markdown, text, HTML, JSONL (one bad line) and a PDF."""
    from fpdf import FPDF

    root.mkdir(parents=True, exist_ok=True)
    (root / "guide").mkdir(exist_ok=True)
    (root / "guide" / "lancedb.md").write_text(
        "# Vector store\n\nThe index lives in LanceDB on disk. Every write creates a new version that "
        "can be checked out later for time travel.\n\n## Deletes\n\nDeleting a document removes its chunks.\n"
    )
    (root / "guide" / "chunking.md").write_text(
        "# Chunking\n\nDocuments are split by title into chunks of at most 256 tokens, counted with the "
        "encoder's own tokenizer so nothing is truncated.\n"
    )
    (root / "notes.txt").write_text("Bananas are rich in potassium and grow in tropical climates.\n")
    (root / "page.html").write_text(
        "<html><body><h1>Gardening</h1><p>Tomatoes need full sun and regular watering.</p></body></html>"
    )
    rows = [
        {"_id": "r1", "title": "Sourdough", "text": "Sourdough bread rises with a wild yeast starter."},
        {"_id": "r2", "title": "Espresso", "text": "Espresso is brewed by forcing hot water through coffee."},
        "this line is not json",
        {"_id": "r3", "title": "Volcanoes", "text": "Magma that reaches the surface is called lava."},
    ]
    (root / "facts.jsonl").write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n"
    )
    pdf = FPDF()
    pdf.set_creation_date(datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))
    pdf.set_font("helvetica", size=12)
    for page_text in (
        "Glaciers are slow rivers of ice that carve valleys over thousands of years.",
        "Sea level rises when glaciers and ice sheets melt into the ocean.",
    ):
        pdf.add_page()
        pdf.multi_cell(0, 8, page_text)
    pdf.output(str(root / "ice.pdf"))


@pytest.fixture()
def tiny_corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    write_tiny_corpus(root)
    return root
