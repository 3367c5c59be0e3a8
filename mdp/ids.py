"""Document ids: one encoding, used by every stage, reversible, and free of collisions.

::

    <source>:<relpath>                 a file that is one document
    <source>:<relpath>#<record id>     a record of a file (a JSONL line with an id)
    <source>:<relpath>@<line>          a line that has no id of its own (a broken or duplicate record)

Source names hold no ``:`` (see ``SourceConfig.name``). In the relpath, ``%``, ``#`` and ``@`` are
percent-encoded, so the first raw ``#`` or ``@`` ends it; in a record id only ``%`` is. In both,
characters that would break a line or a terminal (control characters, line and paragraph
separators) are encoded too, and so are the undecodable bytes of a file name (Python hands them
over as surrogate escapes): ``%XX`` for one byte, ``%uXXXX`` for any other code point. Everything
else stays as it is, so plain ids read naturally (``docs:guide/intro.md``, ``faq:rows.jsonl#r7``).

:func:`parse_document_id` inverts :func:`document_id` exactly. A chunk's id is
``<document id>::<position>`` (``Chunk.make_id``).

The store writes a relpath with :func:`storable_relpath` (only ``%`` and unstorable characters
escaped, reversibly, by :func:`relpath_from_storable`), and any other text with
:func:`storable_text`: Arrow strings are UTF-8, and a file name's undecodable bytes are not.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_PATH_RESERVED = frozenset("%#@")
_RECORD_RESERVED = frozenset("%")
_ESCAPED = re.compile(r"%(?:u([0-9A-F]{4})|([0-9A-F]{2}))")


@dataclass(frozen=True)
class DocumentKey:
    """What a document id names: a file, a record of it, or a line of it."""

    source: str
    relpath: str
    record_id: str | None = None
    line: int | None = None


def _needs_escape(char: str, reserved: frozenset[str]) -> bool:
    if char in reserved:
        return True
    category = unicodedata.category(char)
    return category in ("Cc", "Cs", "Zl", "Zp")


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x80:
        return f"%{code:02X}"
    if 0xDC80 <= code <= 0xDCFF:  # surrogate escape of an undecodable file-name byte
        return f"%{code - 0xDC00:02X}"
    return f"%u{code:04X}"


def _encode(text: str, reserved: frozenset[str]) -> str:
    return "".join(_escape(c) if _needs_escape(c, reserved) else c for c in text)


def _decode(text: str, doc_id: str) -> str:
    def one(match: re.Match[str]) -> str:
        wide, byte = match.groups()
        if wide is not None:
            return chr(int(wide, 16))
        value = int(byte, 16)
        return chr(value) if value < 0x80 else chr(0xDC00 + value)

    decoded = _ESCAPED.sub(one, text)
    if "%" in _ESCAPED.sub("", text):
        raise ValueError(f"document id {doc_id!r}: a '%' that starts no %XX or %uXXXX escape")
    return decoded


def document_id(source: str, relpath: str, record_id: str | None = None, *, line: int | None = None) -> str:
    """The id of a file (``relpath``), of one of its records, or of one of its lines."""
    if ":" in source or not source:
        raise ValueError(f"source name {source!r} must be non-empty and hold no ':'")
    if record_id is not None and line is not None:
        raise ValueError("a document id names a record or a line, not both")
    base = f"{source}:{_encode(relpath, _PATH_RESERVED)}"
    if record_id is not None:
        return f"{base}#{_encode(record_id, _RECORD_RESERVED)}"
    if line is not None:
        if line < 1:
            raise ValueError(f"line numbers start at 1, got {line}")
        return f"{base}@{line}"
    return base


def parse_document_id(doc_id: str) -> DocumentKey:
    """The inverse of :func:`document_id`; raises ``ValueError`` for a string it cannot have made."""
    source, sep, rest = doc_id.partition(":")
    if not sep or not source:
        raise ValueError(f"document id {doc_id!r} has no '<source>:' prefix")
    cut = min((i for i in (rest.find("#"), rest.find("@")) if i >= 0), default=len(rest))
    relpath = _decode(rest[:cut], doc_id)
    marker, tail = rest[cut : cut + 1], rest[cut + 1 :]
    if marker == "#":
        return DocumentKey(source, relpath, record_id=_decode(tail, doc_id))
    if marker == "@":
        if not tail.isascii() or not tail.isdigit() or tail.startswith("0"):
            raise ValueError(f"document id {doc_id!r}: '@' must be followed by a line number")
        return DocumentKey(source, relpath, line=int(tail))
    return DocumentKey(source, relpath)


def storable_relpath(relpath: str) -> str:
    """``relpath`` as the manifest stores it: valid UTF-8, one line, reversible."""
    return _encode(relpath, _RECORD_RESERVED)


def relpath_from_storable(text: str) -> str:
    """The inverse of :func:`storable_relpath` (a value it cannot have made is returned as it is)."""
    try:
        return _decode(text, text)
    except ValueError:  # a manifest written before relpaths were escaped
        return text


def storable_text(text: str) -> str:
    """``text`` with undecodable file-name bytes (surrogate escapes) spelled out, for display columns."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="backslashreplace").decode("utf-8")
    return text
