"""Markdown, HTML and plain text through unstructured, so elements carry their types."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdp.parsers.base import (
    ParseContext,
    ParsedDocument,
    ParseFailure,
    decode_text,
    encoding_error_reason,
    ensure_unstructured_ready,
)

if TYPE_CHECKING:
    from unstructured.documents.elements import Element


class _UnstructuredTextParser:
    """Shared flow: read bytes, decode (BOM, UTF-16, detected legacy encodings), partition."""

    name = "unstructured-text"
    formats: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()

    def _partitioner(self) -> Callable[..., list[Element]]:
        raise NotImplementedError

    def warmup(self) -> None:
        ensure_unstructured_ready()
        self._partitioner()

    def parse(self, path: Path, context: ParseContext) -> Iterator[ParsedDocument | ParseFailure]:
        ensure_unstructured_ready(context.parsing.sentence_splitter)
        data = path.read_bytes()
        content_hash = context.file_hash(path)
        try:
            text, encoding = decode_text(data)
        except UnicodeDecodeError as exc:
            yield ParseFailure(
                encoding_error_reason(exc), external_id=context.relpath, content_hash=content_hash
            )
            return
        if not text.strip():
            yield ParseFailure(
                "no text extracted: the file is empty", external_id=context.relpath, content_hash=content_hash
            )
            return
        try:
            elements = self._partitioner()(text=text, languages=list(context.parsing.languages))
        except Exception as exc:  # unstructured raises many types for malformed markup
            yield ParseFailure(
                f"corrupt: {type(exc).__name__}: {exc}",
                external_id=context.relpath,
                content_hash=content_hash,
            )
            return
        metadata: dict[str, Any] = {}
        if encoding not in ("utf-8", "utf-8-sig", "ascii"):
            metadata["source_encoding"] = encoding
        yield ParsedDocument(context.relpath, list(elements), content_hash, metadata)


class MarkdownParser(_UnstructuredTextParser):
    name = "unstructured-markdown"
    formats = ("markdown",)
    extensions = (".md", ".markdown")

    def _partitioner(self) -> Callable[..., list[Element]]:
        try:
            from unstructured.partition.md import partition_md
        except ImportError as exc:
            from mdp.parsers.base import ParserSetupError

            raise ParserSetupError(
                f"markdown parsing needs the 'markdown' package ({exc}): `.venv/bin/pip install markdown` "
                "(or unstructured[md])"
            ) from exc
        return partition_md


class HtmlParser(_UnstructuredTextParser):
    name = "unstructured-html"
    formats = ("html",)
    extensions = (".html", ".htm")

    def _partitioner(self) -> Callable[..., list[Element]]:
        from unstructured.partition.html import partition_html

        return partition_html


class TextParser(_UnstructuredTextParser):
    name = "unstructured-text"
    formats = ("text",)
    extensions = (".txt", ".text")

    def _partitioner(self) -> Callable[..., list[Element]]:
        from unstructured.partition.text import partition_text

        return partition_text
