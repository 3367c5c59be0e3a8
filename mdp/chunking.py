"""Chunking: unstructured's chunkers for structure, the encoder's tokenizer for the hard limit.

unstructured's ``chunk_by_title`` / ``chunk_elements`` (``basic``) group elements into
sections and measure size in characters. We derive the character budget from the
token target using this document's own characters-per-token ratio, then count every
chunk with the model's tokenizer (special tokens included) and split any chunk over
``max_tokens`` on token boundaries, preferring word boundaries. No text is dropped:
split pieces cover the chunk's text end to end, and only whitespace is trimmed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tokenizers import Tokenizer

from mdp.config import ChunkingConfig
from mdp.tokenizer import count_tokens

if TYPE_CHECKING:
    from unstructured.documents.elements import Element


@dataclass
class ChunkDraft:
    """A chunk before it gets its document's id."""

    text: str
    pages: list[int] = field(default_factory=list)
    element_types: list[str] = field(default_factory=list)
    token_count: int = 0


def special_token_count(tokenizer: Tokenizer) -> int:
    """Tokens the encoder adds around every text ([CLS] and [SEP] for BERT)."""
    return count_tokens(tokenizer, [""])[0]


def chars_per_token(tokenizer: Tokenizer, texts: Sequence[str], sample_chars: int = 200_000) -> float:
    """This document's characters per token (about 4 for English, about 1 for CJK)."""
    sample: list[str] = []
    total = 0
    for text in texts:
        sample.append(text)
        total += len(text)
        if total >= sample_chars:
            break
    if not total:
        return 4.0
    special = special_token_count(tokenizer)
    tokens = sum(n - special for n in count_tokens(tokenizer, sample))
    return min(8.0, max(1.0, total / max(tokens, 1)))


def _element_type(element: Element) -> str:
    return str(getattr(element, "category", None) or type(element).__name__)


def _pages_and_types(chunk: Element) -> tuple[list[int], list[str]]:
    originals = getattr(chunk.metadata, "orig_elements", None) or [chunk]
    pages: set[int] = set()
    types: list[str] = []
    for element in originals:
        page = getattr(element.metadata, "page_number", None)
        if isinstance(page, int):
            pages.add(page)
        kind = _element_type(element)
        if kind not in types:
            types.append(kind)
    return sorted(pages), types


def _whole_document(elements: list[Element], tokenizer: Tokenizer) -> ChunkDraft:
    """The BEIR protocol: one passage per document; the encoder truncates it at its window."""
    text = "\n\n".join(e.text.strip() for e in elements)
    pages: set[int] = set()
    types: list[str] = []
    for element in elements:
        element_pages, element_types = _pages_and_types(element)
        pages.update(element_pages)
        types += [t for t in element_types if t not in types]
    (count,) = count_tokens(tokenizer, [text])
    return ChunkDraft(text=text, pages=sorted(pages), element_types=types, token_count=count)


def _unstructured_chunks(elements: list[Element], config: ChunkingConfig, ratio: float) -> list[Element]:
    from unstructured.chunking.basic import chunk_elements as chunk_basic
    from unstructured.chunking.title import chunk_by_title

    max_chars = max(16, int(min(config.target_tokens, config.max_tokens) * ratio))
    overlap = min(int(config.overlap_tokens * ratio), max_chars // 2)
    kwargs: dict[str, Any] = {
        "max_characters": max_chars,
        "new_after_n_chars": max_chars,
        "overlap": overlap,
        "include_orig_elements": True,
    }
    if config.strategy == "basic":
        return list(chunk_basic(elements, **kwargs))
    combine = max(0, min(config.combine_under_chars, max_chars))
    return list(
        chunk_by_title(elements, combine_text_under_n_chars=combine, multipage_sections=True, **kwargs)
    )


def split_to_limit(text: str, tokenizer: Tokenizer, max_tokens: int) -> list[tuple[str, int]]:
    """Split ``text`` into pieces of at most ``max_tokens`` tokens (special tokens included).

    Cuts fall on token boundaries, at a word boundary when one is in the window. The pieces
    concatenated give back ``text`` minus whitespace at the cuts. Returns (piece, tokens).
    """
    special = special_token_count(tokenizer)
    if max_tokens <= special:
        raise ValueError(f"max_tokens={max_tokens} leaves no room next to {special} special tokens")
    out: list[tuple[str, int]] = []
    pending = [(text, max_tokens - special)]
    guard = 0
    while pending:
        guard += 1
        if guard > 100_000:  # defensive: never loop forever on pathological tokenisation
            raise RuntimeError("token splitting did not converge")
        piece, budget = pending.pop(0)
        if not piece.strip():
            continue
        count = count_tokens(tokenizer, [piece])[0]
        if count <= max_tokens:
            out.append((piece, count))
            continue
        pieces = _cut(piece, tokenizer, budget)
        if len(pieces) == 1:  # one token's span still too long after re-tokenising: split by characters
            half = max(1, len(piece) // 2)
            pieces = [piece[:half], piece[half:]]
        # a re-tokenised piece can grow a little at a cut (e.g. a word split into sub-words)
        pending = [(p, max(1, budget - 1)) for p in pieces] + pending
    return [(p.strip(), n) for p, n in out if p.strip()]


def _cut(text: str, tokenizer: Tokenizer, budget: int) -> list[str]:
    encoding = tokenizer.encode(text, add_special_tokens=False)
    offsets = [span for span in encoding.offsets if span[1] > span[0]]
    if len(offsets) <= budget:
        return [text]
    cuts: list[int] = []  # character positions where a new piece starts
    start = 0
    while len(offsets) - start > budget:
        end = start + budget  # first token of the next piece
        # prefer a word boundary: a gap between this token and the previous one
        best = end
        for k in range(end, max(start + budget // 2, start + 1) - 1, -1):
            if offsets[k][0] > offsets[k - 1][1]:
                best = k
                break
        cuts.append(offsets[best][0])
        start = best
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if a < b]


def chunk_elements(
    elements: Sequence[Element], tokenizer: Tokenizer, config: ChunkingConfig
) -> list[ChunkDraft]:
    """Group elements into chunks no longer than ``config.max_tokens`` model tokens.

    Blank elements are ignored and blank chunks are not emitted; every non-blank character
    of the input ends up in some chunk.
    """
    kept = [e for e in elements if isinstance(getattr(e, "text", None), str) and e.text.strip()]
    if not kept:
        return []
    if config.strategy == "document":
        return [_whole_document(kept, tokenizer)]
    ratio = chars_per_token(tokenizer, [e.text for e in kept])
    chunks = _unstructured_chunks(kept, config, ratio)
    texts = [c.text for c in chunks]
    counts = count_tokens(tokenizer, texts)
    drafts: list[ChunkDraft] = []
    for chunk, text, count in zip(chunks, texts, counts, strict=True):
        if not text.strip():
            continue
        pages, types = _pages_and_types(chunk)
        if count <= config.max_tokens:
            drafts.append(ChunkDraft(text=text, pages=pages, element_types=types, token_count=count))
            continue
        for piece, piece_count in split_to_limit(text, tokenizer, config.max_tokens):
            drafts.append(
                ChunkDraft(text=piece, pages=list(pages), element_types=list(types), token_count=piece_count)
            )
    return _rebalance(drafts, tokenizer, config)


def _joined(a: ChunkDraft, b: ChunkDraft, tokenizer: Tokenizer) -> ChunkDraft:
    text = f"{a.text}\n\n{b.text}"
    return ChunkDraft(
        text=text,
        pages=sorted(set(a.pages) | set(b.pages)),
        element_types=list(dict.fromkeys(a.element_types + b.element_types)),
        token_count=count_tokens(tokenizer, [text])[0],
    )


def _rebalance(drafts: list[ChunkDraft], tokenizer: Tokenizer, config: ChunkingConfig) -> list[ChunkDraft]:
    """Fold headings and fragments into their neighbours.

    unstructured's chunkers emit a heading alone when the section after it is too long to share a
    chunk, and cut long text greedily, leaving a short remainder. Both make weak retrieval units: a
    title without its text, a sentence without its context. A heading-only chunk joins the next
    chunk, and a short remainder joins the piece before it (or the two are cut again into halves),
    always within ``max_tokens``. A new section (one that starts with a heading) is never folded back.
    """
    small = max(1, config.target_tokens // 4)
    out: list[ChunkDraft] = []
    pending: ChunkDraft | None = None  # a heading waiting for its text
    for draft in drafts:
        if pending is not None:
            merged = _joined(pending, draft, tokenizer)
            if merged.token_count <= config.max_tokens:
                draft = merged
            else:
                out.append(pending)
            pending = None
        if draft.element_types and set(draft.element_types) <= {"Title"}:
            pending = draft
            continue
        starts_section = bool(draft.element_types) and draft.element_types[0] == "Title"
        if out and draft.token_count < small and not starts_section:  # a remainder of a cut section
            merged = _joined(out[-1], draft, tokenizer)
            if merged.token_count <= config.max_tokens:
                out[-1] = merged
                continue
            halves = _halves(merged, tokenizer, config.max_tokens)
            if halves:
                out[-1:] = halves
                continue
        out.append(draft)
    if pending is not None:
        out.append(pending)
    return out


def _halves(draft: ChunkDraft, tokenizer: Tokenizer, max_tokens: int) -> list[ChunkDraft] | None:
    """Cut a chunk into two of about equal size, or None when that does not fit the limit."""
    special = special_token_count(tokenizer)
    half = (draft.token_count - special + 1) // 2 + 1
    pieces = [p.strip() for p in _cut(draft.text, tokenizer, half) if p.strip()]
    if len(pieces) != 2:
        return None
    counts = count_tokens(tokenizer, pieces)
    if max(counts) > max_tokens:
        return None
    return [
        ChunkDraft(text=p, pages=list(draft.pages), element_types=list(draft.element_types), token_count=n)
        for p, n in zip(pieces, counts, strict=True)
    ]
