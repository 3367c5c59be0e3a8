"""Sentences of a chunk: the units of hybrid search's sentence-level dense signal.

A claim or a question usually matches one sentence of a passage better than the whole passage,
and MiniLM-class encoders were trained on sentence pairs. So, besides one vector per chunk, the
embed stage stores a vector for every sentence of a multi-sentence chunk (in the embedding
cache, keyed by model and text), and the Retriever scores a chunk's best sentence.

The split must be the same at embed time and at search time, fast (it runs again whenever an
index version is loaded) and free of models: line breaks, then sentence-ending punctuation
(and any closing quote or bracket) followed by a space and a capital, digit or opening bracket.
"e.g. the" stays whole because a lower-case word follows; "Fig. 2" and "J. Smith" because a
known abbreviation or an initial is glued back to what follows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mdp.schemas import text_hash

_LINES = re.compile(r"\s*\n\s*")
# split on the whitespace only: the punctuation and a closing quote or bracket stay with the sentence
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[]?[A-Z0-9])")
_ABBREVIATION = re.compile(
    r"(?:\b(?:Fig|Figs|Eq|Eqs|Ref|Refs|Tab|No|Nos|Vol|al|vs|approx|ca|cf|Dr|Mr|Mrs|Ms|Prof|St)|\b[A-Z]|e\.g|i\.e)\.$"
)
MIN_CHARS = 12  # shorter pieces of a line ("Why?", "Yes.") join their neighbour


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` in order; joined with spaces they give back its words."""
    pieces: list[str] = []
    for line in _LINES.split(text.strip()):
        glued: list[str] = []  # first undo splits after abbreviations: "Fig. 2", "J. Smith"
        for piece in (p.strip() for p in _SENTENCE_END.split(line)):
            if not piece:
                continue
            if glued and _ABBREVIATION.search(glued[-1]):
                glued[-1] = f"{glued[-1]} {piece}"
            else:
                glued.append(piece)
        in_line: list[str] = []  # a line (a heading, a title) is never merged into another
        for sentence in glued:
            if in_line and (len(sentence) < MIN_CHARS or len(in_line[-1]) < MIN_CHARS):
                in_line[-1] = f"{in_line[-1]} {sentence}"
            else:
                in_line.append(sentence)
        pieces += in_line
    return pieces


def chunk_sentences(text: str) -> list[str]:
    """The sentences that get their own vector: none for a one-sentence chunk (its vector serves)."""
    sentences = split_sentences(text)
    return sentences if len(sentences) > 1 else []


def sentences_by_hash(chunk_texts: Iterable[str]) -> dict[str, str]:
    """``{text hash: sentence}`` of every sentence that gets its own vector in these chunks."""
    out: dict[str, str] = {}
    for text in chunk_texts:
        for sentence in chunk_sentences(text):
            out.setdefault(text_hash(sentence), sentence)
    return out
