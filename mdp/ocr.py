"""Offline OCR with the Tesseract command-line tool (Debian ``tesseract-ocr``, Homebrew ``tesseract``).

Images go to ``tesseract stdin stdout … tsv`` through a pipe and the text comes back the same
way, so nothing (a decrypted page included) is written to disk. Each call is bounded by a
timeout, runs single-threaded (parse workers already use every core) and is killed with its
worker (``PR_SET_PDEATHSIG`` on Linux). The TSV output carries a confidence per word: words
tesseract itself doubts are dropped and the page's mean confidence decides whether its text is
kept at all.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

INSTALL_HINT_DEBIAN = "apt-get install tesseract-ocr tesseract-ocr-eng"
INSTALL_HINT = (
    f"install Tesseract (`{INSTALL_HINT_DEBIAN}`, `make setup` does it as root; "
    "macOS: `brew install tesseract`)"
)
MIN_WORD_CONFIDENCE = 30.0  # tesseract's own 0-100 scale; lower words are mostly specks and rules


class OcrError(RuntimeError):
    """Tesseract could not be run on an image (missing, failed, timed out)."""


@dataclass(frozen=True)
class Tesseract:
    path: str
    version: str
    languages: tuple[str, ...]


@functools.lru_cache(maxsize=1)
def find_tesseract() -> Tesseract | None:
    """The tesseract binary on PATH with its version and installed languages, or None."""
    path = shutil.which("tesseract")
    if path is None:
        return None
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
        listing = subprocess.run([path, "--list-langs"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    first = (version.stdout or version.stderr).strip().splitlines()
    languages = tuple(
        line.strip()
        for line in listing.stdout.splitlines()[1:]  # the first line says where the data lives
        if line.strip() and line.strip() != "osd"
    )
    return Tesseract(path=path, version=first[0] if first else "tesseract", languages=languages)


def language_package(code: str) -> str:
    """Debian's package for a tesseract language code (``deu`` -> ``tesseract-ocr-deu``)."""
    return "tesseract-ocr-" + code.lower().replace("_", "-")


def missing_languages(tesseract: Tesseract, wanted: Sequence[str]) -> list[str]:
    return [code for code in wanted if code not in tesseract.languages]


@dataclass
class OcrPage:
    """The text tesseract read on one image, as paragraphs, with its mean word confidence."""

    paragraphs: list[str] = field(default_factory=list)
    confidence: float = 0.0  # mean over the kept words, weighted by their length
    words: int = 0
    dropped_words: int = 0

    @property
    def text(self) -> str:
        return "\n\n".join(self.paragraphs)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def _join_words(words: list[str]) -> str:
    """Words of one line; tesseract splits CJK text into single characters, which join without spaces."""
    out = ""
    for word in words:
        if out and not (_CJK.search(out[-1]) and _CJK.match(word)):
            out += " "
        out += word
    return out


def parse_tsv(tsv: str, min_word_confidence: float = MIN_WORD_CONFIDENCE) -> OcrPage:
    """Paragraphs (block, paragraph) of the words tesseract is reasonably sure of."""
    page = OcrPage()
    lines: dict[tuple[int, int, int], list[str]] = {}
    weight = total = 0.0
    for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
        text = (row.get("text") or "").strip()
        if row.get("level") != "5" or not text:
            continue
        try:
            confidence = float(row.get("conf") or -1)
            key = (int(row["block_num"]), int(row["par_num"]), int(row["line_num"]))
        except (TypeError, ValueError):
            continue
        if confidence < min_word_confidence:
            page.dropped_words += 1
            continue
        lines.setdefault(key, []).append(text)
        page.words += 1
        total += confidence * len(text)
        weight += len(text)
    paragraphs: dict[tuple[int, int], list[str]] = {}
    for (block, par, _), words in sorted(lines.items()):
        paragraphs.setdefault((block, par), []).append(_join_words(words))
    for lines_of_paragraph in paragraphs.values():
        joined = lines_of_paragraph[0]
        for line in lines_of_paragraph[1:]:  # re-join words hyphenated at line ends
            if joined.endswith("-") and line[:1].islower():
                joined = joined[:-1] + line
            else:
                joined += " " + line
        page.paragraphs.append(joined)
    page.confidence = total / weight if weight else 0.0
    return page


def ocr_image(image: bytes, languages: Sequence[str], timeout_s: float, dpi: int) -> OcrPage:
    """Run tesseract on one encoded image (PNG) and parse its TSV output."""
    tesseract = find_tesseract()
    if tesseract is None:
        raise OcrError(f"tesseract not found on PATH — {INSTALL_HINT}")
    command = [
        tesseract.path,
        "stdin",
        "stdout",
        "-l",
        "+".join(languages) or "eng",
        "--psm",
        "3",
        "--dpi",
        str(dpi),
        "tsv",
    ]
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}  # one worker per core already
    try:
        done = subprocess.run(
            command,
            input=image,
            capture_output=True,
            timeout=max(1.0, timeout_s),
            env=env,
            check=False,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509
        )
    except subprocess.TimeoutExpired as exc:
        raise OcrError(f"tesseract took longer than {timeout_s:.0f} s on one page") from exc
    except OSError as exc:
        raise OcrError(f"tesseract could not be started: {exc}") from exc
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise OcrError(f"tesseract failed (exit {done.returncode}): {detail[-1] if detail else 'no message'}")
    return parse_tsv(done.stdout.decode("utf-8", "replace"))
