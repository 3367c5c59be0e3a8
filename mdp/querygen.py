"""Synthetic evaluation queries: a local instruct model writes questions about chunks.

Each sampled chunk gets one prompt asking for N questions, one per line; all prompts
go through ``mlx_lm.batch_generate`` together. The reply is parsed line by line:
numbering and bullets are stripped, empty lines, preambles and duplicates dropped,
at most N kept. A question is relevant to the document its chunk came from, so
``GeneratedQuery.chunk_id`` is what qrels are built from (``to_labelled_queries``).

The weights decide the quality: use an instruct model (e.g. an mlx-community Qwen3
folder downloaded beforehand). Sampling of chunks is deterministic for a given seed
and set of chunk ids; with ``temperature > 0`` the token sampling is seeded too.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdp.blas import activate_openblas

activate_openblas()  # before the first `import mlx.core` (mdp/blas.py); entry points did it already

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
from mlx_lm import batch_generate, load  # noqa: E402
from mlx_lm.sample_utils import make_sampler  # noqa: E402
from mlx_lm.tokenizer_utils import TokenizerWrapper  # noqa: E402

from mdp.schemas import LabelledQuery  # noqa: E402

SYSTEM_PROMPT = (
    "You write search queries for evaluating a retrieval system. "
    "Answer with the questions only, one per line, with no numbering and no other text."
)

USER_PROMPT = (
    "Write {n} different questions that a reader could ask a search engine and that the passage "
    "below answers. Each question must make sense without seeing the passage: name the subject "
    "instead of saying 'the passage' or 'the text'.\n\nPassage:\n{passage}"
)

# "1. ", "2) ", "- ", "* ", "• ", "Q: ", "Question 3: " at the start of a line.
_LEAD = re.compile(r"^\s*(?:[-*•]+\s*|\(?\d{1,3}[.)]\s+|q(?:uestion)?\s*\d*\s*[:.)]\s*)", re.IGNORECASE)
_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL)


@dataclass(frozen=True)
class GeneratedQuery:
    id: str
    text: str
    chunk_id: str


def parse_questions(reply: str, limit: int) -> list[str]:
    """Questions from a model's reply: one per line, cleaned, unique (case-insensitive), at most ``limit``."""
    reply = _THINK.sub("", reply)
    seen: set[str] = set()
    out: list[str] = []
    for line in reply.splitlines():
        line = "".join(ch for ch in line if ch.isprintable())
        text = _LEAD.sub("", line).strip().strip('"').strip()
        text = " ".join(text.split())
        if not text or text.endswith(":"):  # blank, or a preamble such as "Here are two questions:"
            continue
        key = text.casefold()
        if key in seen:
            continue
        seen.add(key)
        out.append(text)
        if len(out) >= limit:
            break
    return out


def sample_chunks(chunks: Sequence[tuple[str, str]], sample: int | None, seed: int) -> list[tuple[str, str]]:
    """Chunks with text, at most ``sample`` of them, chosen by ``seed`` independently of input order."""
    usable = sorted({chunk_id: text for chunk_id, text in chunks if text.strip()}.items())
    if sample is None or sample >= len(usable):
        return usable
    if sample < 0:
        raise ValueError(f"sample must be None or >= 0, got {sample}")
    picked = sorted(random.Random(seed).sample(range(len(usable)), sample))
    return [usable[i] for i in picked]


def query_id(chunk_id: str, index: int) -> str:
    return f"gen-{hashlib.sha256(chunk_id.encode()).hexdigest()[:12]}-{index}"


class QueryGenerator:
    """Writes ``questions_per_chunk`` questions per sampled chunk with a local mlx-lm model."""

    def __init__(
        self,
        path: str | Path,
        questions_per_chunk: int = 2,
        max_tokens: int = 64,
        temperature: float = 0.0,
        seed: int = 0,
        *,
        max_passage_tokens: int = 1024,
        batch_size: int = 8,
    ) -> None:
        if questions_per_chunk < 1:
            raise ValueError(f"questions_per_chunk must be at least 1, got {questions_per_chunk}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        self.path = Path(path)
        if not (self.path / "config.json").exists():
            raise FileNotFoundError(
                f"{self.path} is not a local mlx-lm model folder (no config.json); download an instruct "
                "model beforehand, e.g. `hf download mlx-community/Qwen3-1.7B-4bit --local-dir DIR`"
            )
        self.questions_per_chunk = questions_per_chunk
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.seed = seed
        self.max_passage_tokens = max_passage_tokens
        self.batch_size = batch_size
        loaded = load(str(self.path))
        self.model: nn.Module = loaded[0]
        self.tokenizer: TokenizerWrapper = loaded[1]
        self.model_id = self.path.name

    def info(self) -> dict[str, str | int | float | bool]:
        return {
            "model_id": self.model_id,
            "questions_per_chunk": self.questions_per_chunk,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
            "chat_template": bool(self.tokenizer.has_chat_template),
        }

    def _passage(self, text: str) -> str:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) <= self.max_passage_tokens:
            return text.strip()
        return str(self.tokenizer.decode(ids[: self.max_passage_tokens])).strip()

    def prompt(self, text: str) -> list[int]:
        """Token ids of the prompt for one chunk (chat template when the tokenizer has one)."""
        user = USER_PROMPT.format(n=self.questions_per_chunk, passage=self._passage(text))
        if self.tokenizer.has_chat_template:
            messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]
            rendered = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False, enable_thinking=False
            )
            return list(self.tokenizer.encode(str(rendered), add_special_tokens=False))
        plain = f"{SYSTEM_PROMPT}\n\n{user}\n\nQuestions:\n"
        return list(self.tokenizer.encode(plain, add_special_tokens=True))

    def _sampler(self) -> Callable[[mx.array], mx.array] | None:
        return make_sampler(temp=self.temperature) if self.temperature > 0 else None

    def replies(self, texts: Sequence[str]) -> list[str]:
        """Raw model replies, one per text, in order.

        With ``temperature > 0`` this reseeds MLX's global random state with ``seed`` first, so the
        same texts give the same replies on every call.
        """
        prompts = [self.prompt(text) for text in texts]
        kwargs: dict[str, Any] = {}
        sampler = self._sampler()
        if sampler is not None:
            kwargs["sampler"] = sampler
            mx.random.seed(self.seed)
        out: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            response = batch_generate(
                self.model,
                self.tokenizer,
                prompts[start : start + self.batch_size],
                max_tokens=self.max_tokens,
                return_token_ids=True,
                **kwargs,
            )
            # Decode again without special tokens (batch_generate's own texts keep them).
            for ids in response.token_ids or []:
                out.append(str(self.tokenizer.decode(ids, skip_special_tokens=True)))
        return out

    def generate(self, chunks: Sequence[tuple[str, str]], sample: int | None = None) -> list[GeneratedQuery]:
        """Up to ``questions_per_chunk`` questions for each of ``sample`` chunks (all when None)."""
        picked = sample_chunks(chunks, sample, self.seed)
        if not picked:
            return []
        replies = self.replies([text for _, text in picked])
        queries: list[GeneratedQuery] = []
        for (chunk_id, _), reply in zip(picked, replies, strict=True):
            for index, question in enumerate(parse_questions(reply, self.questions_per_chunk)):
                queries.append(GeneratedQuery(id=query_id(chunk_id, index), text=question, chunk_id=chunk_id))
        return queries


def to_labelled_queries(
    queries: Sequence[GeneratedQuery], relevant_of_chunk: Mapping[str, str] | Callable[[str], str]
) -> list[LabelledQuery]:
    """Labelled queries whose one relevant item is the source chunk's document.

    ``relevant_of_chunk`` maps a chunk id to the id qrels use (a document's ``external_id``).
    """
    lookup = relevant_of_chunk if callable(relevant_of_chunk) else relevant_of_chunk.__getitem__
    return [LabelledQuery(id=q.id, text=q.text, relevant={lookup(q.chunk_id): 1}) for q in queries]


def write_labelled_queries(labelled: Sequence[LabelledQuery], directory: str | Path) -> Path:
    """Write ``queries.jsonl`` ({"_id", "text"}) and ``qrels.tsv`` beside it; returns the queries path.

    This is the bundled-query layout the evaluation stage reads (``[eval] queries`` in mdp.toml,
    ``mdp.evaluation.load_labelled_queries``); qrels are BEIR TSV with a header.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    queries_path = out / "queries.jsonl"
    with queries_path.open("w", encoding="utf-8") as handle:
        for query in labelled:
            handle.write(json.dumps({"_id": query.id, "text": query.text}, ensure_ascii=False) + "\n")
    with (out / "qrels.tsv").open("w", encoding="utf-8") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for query in labelled:
            for doc_id, grade in sorted(query.relevant.items()):
                handle.write(f"{query.id}\t{doc_id}\t{grade}\n")
    return queries_path
