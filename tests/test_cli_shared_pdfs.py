"""`mdp ingest ../shared/data/pdfs --json` accounts for all 55 real-world PDFs (issue 3's bar).

Skips when the shared data folder is absent; the core tests do not need it.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shared_path

pytestmark = pytest.mark.slow  # the 55 shared PDFs through the CLI, with OCR

# User passwords, as the manifest's notes give them.
PASSWORDS = {
    "pysf_libreoffice-writer-password.pdf": "openpassword",
    "pdfminer_enc-rc4-40.pdf": "foo",
    "pdfminer_enc-aes-128-unencrypted-metadata.pdf": "foo",
    "pdfminer_enc-aes-256.pdf": "foo",
    "pdfminer_enc-aes-256-r6.pdf": "usersecret",
    "pypdf_enc-r2-user-password.pdf": "asdfzxcv",
    "unst_password.pdf": "password",
}


def _ingest(pdfs: Path, store: Path, *extra: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "mdp_cli", "ingest", str(pdfs), "--store", str(store), "--json", *extra],
        capture_output=True,
        text=True,
        timeout=1800,
        env=os.environ.copy(),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def test_all_55_pdfs_end_as_chunks_or_a_reason(tmp_path):
    pdfs = shared_path("pdfs")
    with (pdfs / "MANIFEST.tsv").open() as fh:
        manifest = {row["file"]: row for row in csv.DictReader(fh, delimiter="\t")}
    store = tmp_path / "store"

    report = _ingest(pdfs, store)
    # The folder also holds README.md (chunked) and MANIFEST.tsv (no parser for .tsv: quarantined).
    assert report["discovered"] == len(manifest) + 2 == 57
    assert report["chunked_documents"] + report["quarantined"] == 57
    pdf_counts = report["by_format"]["pdf"]
    assert pdf_counts["discovered"] == 55 == pdf_counts["chunked_documents"] + pdf_counts["quarantined"]
    assert report["by_format"]["markdown"]["chunked_documents"] == 1
    reasons = {Path(q["path"]).name: q["reason"] for q in report["quarantine"]}
    assert "unsupported format" in reasons.pop("MANIFEST.tsv")
    from mdp.store import VectorStore

    entries = VectorStore(str(store), read_only=True).manifest()
    pdf_status = {Path(e.path).name: e.status for e in entries.values() if e.path.endswith(".pdf")}
    assert sorted(pdf_status) == sorted(manifest)  # every PDF has exactly one fate
    assert sum(s == "chunked" for s in pdf_status.values()) + len(reasons) == 55
    assert all(reason.strip() for reason in reasons.values())
    readable_text = [
        name
        for name, row in manifest.items()
        if row["pypdf_encrypted"] == "False" and int(row["pypdf_text_chars_first20p"] or 0) > 200
    ]
    assert len(readable_text) >= 25
    assert not [name for name in readable_text if name in reasons], reasons
    for name in PASSWORDS:
        assert name in reasons and "password" in reasons[name], (name, reasons.get(name))

    args = [f"--password={name}={secret}" for name, secret in PASSWORDS.items()]
    retried = _ingest(pdfs, store, "--retry-quarantined", *args)
    assert retried["discovered"] == 57
    assert retried["chunked_documents"] + retried["quarantined"] == 57
    after = {Path(q["path"]).name: q["reason"] for q in retried["quarantine"]}
    still_locked = [name for name in PASSWORDS if name in after and "password" in after[name]]
    assert not still_locked, after
    assert retried["chunked_documents"] > report["chunked_documents"]

    # Narrowed to the PDFs, the same source drops README.md and MANIFEST.tsv and re-parses nothing.
    only_pdfs = _ingest(pdfs, store, "--include", "*.pdf", *args)
    assert only_pdfs["discovered"] == 55 == only_pdfs["chunked_documents"] + only_pdfs["quarantined"]
    assert (only_pdfs["deleted_documents"], only_pdfs["parsed_files"]) == (2, 0)
    assert only_pdfs["chunked_documents"] == retried["chunked_documents"] - 1
