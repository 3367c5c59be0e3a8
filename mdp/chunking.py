"""Chunking: unstructured's chunkers for structure, the encoder's tokenizer for the hard limit.

unstructured's ``chunk_by_title`` / ``chunk_elements`` (``basic``) group elements into
sections and measure size in characters. We derive the character budget from the
token target using this document's own characters-per-token ratio, then count every
chunk with the model's tokenizer (special tokens included) and split any chunk over
``max_tokens`` on token boundaries, preferring word boundaries. No text is dropped:
split pieces cover the chunk's text end to end, and only whitespace is trimmed.

A chunk also holds at most ``max_tokens * MAX_CHARS_PER_TOKEN`` characters. A word-piece
tokenizer turns a word longer than its limit (100 characters for BERT) into one unknown token,
so without that cap a megabyte without whitespace would count as a handful of tokens. Every step
tokenises text of bounded length, so chunking costs grow linearly with the input.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tokenizers import Tokenizer

from mdp.config import ChunkingConfig
from mdp.tokenizer import count_tokens

if TYPE_CHECKING:
    from unstructured.documents.elements import Element

# English runs at about 4 characters per token; more than 8 only happens when the tokenizer gives up
# (unknown tokens for over-long words), and the encoder would see nothing of those characters anyway.
MAX_CHARS_PER_TOKEN = 8


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
        sample.append(text[: sample_chars - total])  # one huge element must not be tokenised whole
        total += len(sample[-1])
        if total >= sample_chars:
            break
    if not total:
        return 4.0
    special = special_token_count(tokenizer)
    tokens = sum(n - special for n in count_tokens(tokenizer, sample))
    return min(float(MAX_CHARS_PER_TOKEN), max(1.0, total / max(tokens, 1)))


def max_chars_for(max_tokens: int) -> int:
    """Characters a chunk of ``max_tokens`` tokens may hold (see MAX_CHARS_PER_TOKEN)."""
    return max_tokens * MAX_CHARS_PER_TOKEN


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


def split_to_limit(
    text: str, tokenizer: Tokenizer, max_tokens: int, max_chars: int | None = None
) -> list[tuple[str, int]]:
    """Split ``text`` into pieces of at most ``max_tokens`` tokens (special tokens included) and
    ``max_chars`` characters (default: ``max_chars_for(max_tokens)``).

    Cuts fall on token boundaries, at a word boundary when one is in the window; a single token
    longer than ``max_chars`` (an over-long word) is cut by characters. The pieces concatenated
    give back ``text`` minus whitespace at the cuts. Returns (piece, tokens). Each round tokenises
    pieces no longer than the one before, so the cost is linear in ``len(text)``.
    """
    special = special_token_count(tokenizer)
    if max_tokens <= special:
        raise ValueError(f"max_tokens={max_tokens} leaves no room next to {special} special tokens")
    max_chars = max_chars or max_chars_for(max_tokens)
    out: list[tuple[str, int]] = []
    pending: deque[tuple[str, int]] = deque([(text, max_tokens - special)])
    guard = 0
    while pending:
        guard += 1
        if guard > 100_000 + len(text):  # defensive: never loop forever on pathological tokenisation
            raise RuntimeError("token splitting did not converge")
        piece, budget = pending.popleft()
        if not piece.strip():
            continue
        if len(piece.strip()) <= max_chars:
            count = count_tokens(tokenizer, [piece])[0]
            if count <= max_tokens:
                out.append((piece, count))
                continue
        pieces = _cut(piece, tokenizer, budget, max_chars)
        if len(pieces) == 1:  # one token's span still too long after re-tokenising: split by characters
            half = max(1, len(piece) // 2)
            pieces = [piece[:half], piece[half:]]
        # a re-tokenised piece can grow a little at a cut (e.g. a word split into sub-words)
        pending.extendleft(reversed([(p, max(1, budget - 1)) for p in pieces]))
    return [(p.strip(), n) for p, n in out if p.strip()]


def _spans(text: str, tokenizer: Tokenizer, max_chars: int) -> list[tuple[int, int]]:
    """Character spans of the tokens of ``text``; a token longer than ``max_chars`` is cut into pieces."""
    spans: list[tuple[int, int]] = []
    for start, end in tokenizer.encode(text, add_special_tokens=False).offsets:
        while end - start > max_chars:
            spans.append((start, start + max_chars))
            start += max_chars
        if end > start:
            spans.append((start, end))
    return spans


def _cut(text: str, tokenizer: Tokenizer, budget: int, max_chars: int | None = None) -> list[str]:
    """Cut ``text`` into pieces of at most ``budget`` tokens and ``max_chars`` characters."""
    max_chars = max_chars or len(text)
    offsets = _spans(text, tokenizer, max_chars)
    if len(offsets) <= budget and len(text.strip()) <= max_chars:
        return [text]
    cuts: list[int] = []  # character positions where a new piece starts
    start = 0
    while start < len(offsets):
        first = 0 if start == 0 else offsets[start][0]
        end = min(len(offsets), start + budget)  # first token of the next piece
        while end > start + 1 and offsets[end - 1][1] - first > max_chars:
            end -= 1
        if end == len(offsets):
            break
        # prefer a word boundary: a gap between this token and the previous one
        best = end
        for k in range(end, max(start + (end - start) // 2, start + 1) - 1, -1):
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
    max_chars = max_chars_for(config.max_tokens)
    texts = [c.text for c in chunks]
    counts = count_tokens(tokenizer, texts)
    drafts: list[ChunkDraft] = []
    for chunk, text, count in zip(chunks, texts, counts, strict=True):
        if not text.strip():
            continue
        pages, types = _pages_and_types(chunk)
        if count <= config.max_tokens and len(text.strip()) <= max_chars:
            drafts.append(ChunkDraft(text=text, pages=pages, element_types=types, token_count=count))
            continue
        for piece, piece_count in split_to_limit(text, tokenizer, config.max_tokens, max_chars):
            drafts.append(
                ChunkDraft(text=piece, pages=list(pages), element_types=list(types), token_count=piece_count)
            )
    return _rebalance(drafts, tokenizer, config)


def _joined(a: ChunkDraft, b: ChunkDraft, tokenizer: Tokenizer, max_chars: int) -> ChunkDraft | None:
    """``a`` and ``b`` as one chunk, or None when that would hold more than ``max_chars`` characters
    (checked before tokenising: folding pieces into a growing chunk must not re-tokenise it whole)."""
    if len(a.text) + len(b.text) + 2 > max_chars:
        return None
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
    max_chars = max_chars_for(config.max_tokens)
    out: list[ChunkDraft] = []
    pending: ChunkDraft | None = None  # a heading waiting for its text
    for draft in drafts:
        if pending is not None:
            merged = _joined(pending, draft, tokenizer, max_chars)
            if merged is not None and merged.token_count <= config.max_tokens:
                draft = merged
            else:
                out.append(pending)
            pending = None
        if draft.element_types and set(draft.element_types) <= {"Title"}:
            pending = draft
            continue
        starts_section = bool(draft.element_types) and draft.element_types[0] == "Title"
        if out and draft.token_count < small and not starts_section:  # a remainder of a cut section
            merged = _joined(out[-1], draft, tokenizer, max_chars)
            if merged is None:  # too many characters to fold: keep it as it is
                out.append(draft)
                continue
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


# A document whose text the encoder sees mostly as its unknown token would get vectors that say
# nothing about it: quarantine it instead (mdp/isolation.py).
UNKNOWN_TEXT_LIMIT = 0.5


def unknown_share(tokenizer: Tokenizer, texts: Sequence[str]) -> float:
    """Share of the non-whitespace characters of ``texts`` that the tokenizer maps to its unknown token
    (a word-piece tokenizer does so for words over its length limit and for characters it lacks)."""
    unk = getattr(getattr(tokenizer, "model", None), "unk_token", None)
    unk_id = tokenizer.token_to_id(unk) if isinstance(unk, str) else None
    total = sum(len("".join(text.split())) for text in texts)
    if unk_id is None or not total:
        return 0.0
    unknown = 0
    for text, encoding in zip(
        texts, tokenizer.encode_batch(list(texts), add_special_tokens=False), strict=True
    ):
        ids = encoding.ids
        if unk_id not in ids:  # the common case, without a loop over the tokens
            continue
        for token_id, (start, end) in zip(ids, encoding.offsets, strict=True):
            if token_id == unk_id:
                unknown += len("".join(text[start:end].split()))
    return unknown / total


def _spread_sample(texts: Sequence[str], limit: int = 65_536) -> list[str]:
    """Every k-th text, k chosen so that about ``limit`` characters remain: an estimate of a share
    over the whole document costs a bounded amount of tokenising."""
    total = sum(len(text) for text in texts)
    step = max(1, -(-total // limit))
    return list(texts[::step])


def unindexable_reason(
    tokenizer: Tokenizer, texts: Sequence[str], source_texts: Sequence[str] | None = None
) -> str | None:
    """Why a document's chunks (``texts``) would be noise to the encoder, or None when they are fine.
    ``source_texts`` (the text before chunking) gives the longest whitespace-free run in the reason."""
    share = unknown_share(tokenizer, _spread_sample(texts))
    if share < UNKNOWN_TEXT_LIMIT:
        return None
    longest = max((len(word) for text in (source_texts or texts) for word in text.split()), default=0)
    return (
        f"unindexable: {share:.0%} of its text is unknown to the encoder's vocabulary (its longest run "
        f"without whitespace has {longest:,} characters: base64, binary data, or a script the model does "
        "not cover?) — remove or convert that content, or use a model whose tokenizer covers it"
    )
