"""The scale benchmark's corpus: SciFact sentences recombined into chunk-sized passages.

Embedding a million passages on two CPU cores is not possible in a benchmark, so the vectors are
*mixtures of real embeddings*: every SciFact sentence (title and abstract sentences, about 50k) is
embedded once with the project's MLX encoder (all-MiniLM-L6-v2) and cached under ``var/scale/``.
A passage is a window of 3-8 consecutive sentences of one abstract, plus, with probability 0.5, one
or two sentences of a topically near abstract (nearest by the mean of its sentence vectors). Its
vector is the normalised length-weighted mean of its sentences' real vectors plus Gaussian noise
(sigma 0.01 per dimension, so that passages sharing sentences still differ). Passages about the same
abstract are therefore near each other and near their topic's neighbours, as in a real corpus; the
query set is SciFact's own claims, embedded by the same encoder (also cached).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mdp.config import PROJECT_ROOT
from mdp.sentences import split_sentences

CACHE_DIR = PROJECT_ROOT / "var" / "scale"
NOISE = 0.01


@dataclass
class SentenceBank:
    """Every SciFact sentence with its real vector, grouped by abstract (``doc_offsets``, CSR)."""

    sentences: list[str]
    vectors: np.ndarray  # (sentences, dim) float32, normalised
    doc_offsets: np.ndarray  # abstract i owns sentences doc_offsets[i]:doc_offsets[i+1]
    queries: list[str]
    query_vectors: np.ndarray

    @property
    def n_docs(self) -> int:
        return len(self.doc_offsets) - 1


def _read_scifact(folder: Path) -> tuple[list[list[str]], list[str]]:
    docs: list[list[str]] = []
    with (folder / "corpus.jsonl").open() as fh:
        for line in fh:
            row = json.loads(line)
            sentences = ([row["title"].strip()] if row.get("title") else []) + split_sentences(
                row.get("text", "")
            )
            if len(sentences) >= 2:
                docs.append(sentences)
    with (folder / "queries.jsonl").open() as fh:
        queries = [json.loads(line)["text"] for line in fh]
    return docs, queries


def load_sentence_bank(folder: Path, encoder: object | None = None, log=print) -> SentenceBank:
    """The bank, embedding what ``var/scale/`` does not hold yet (about 10 minutes on 2 cores, once)."""
    docs, queries = _read_scifact(folder)
    sentences = [s for doc in docs for s in doc]
    offsets = np.zeros(len(docs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(d) for d in docs])
    if encoder is None:
        from mdp.encoder import SentenceEncoder

        encoder = SentenceEncoder()
    digest = hashlib.sha256("\n".join(sentences + queries).encode()).hexdigest()[:12]
    path = CACHE_DIR / f"scifact-{encoder.model_version}-{digest}.npz"  # type: ignore[attr-defined]
    if path.exists():
        data = np.load(path)
        vectors, query_vectors = data["vectors"], data["queries"]
    else:
        log(f"scale: embedding {len(sentences):,} SciFact sentences and {len(queries):,} claims once ...")
        vectors = encoder.encode(sentences, progress=True)  # type: ignore[attr-defined]
        query_vectors = encoder.encode(queries)  # type: ignore[attr-defined]
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, vectors=vectors, queries=query_vectors)
        tmp.rename(path)
    return SentenceBank(
        sentences, vectors.astype(np.float32), offsets, queries, query_vectors.astype(np.float32)
    )


def neighbour_docs(bank: SentenceBank, k: int = 5) -> np.ndarray:
    """For each abstract, its k nearest abstracts by mean sentence vector (itself excluded)."""
    means = np.add.reduceat(bank.vectors, bank.doc_offsets[:-1], axis=0)
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    out = np.zeros((bank.n_docs, k), dtype=np.int64)
    for start in range(0, bank.n_docs, 1024):
        sims = means[start : start + 1024] @ means.T
        for row in range(sims.shape[0]):
            sims[row, start + row] = -2.0
        out[start : start + 1024] = np.argpartition(-sims, k, axis=1)[:, :k]
    return out


def passages(
    bank: SentenceBank, start: int, count: int, neighbours: np.ndarray, seed: int = 0
) -> tuple[list[str], np.ndarray, list[list[str]]]:
    """Passages ``start .. start+count`` of the endless deterministic sequence: texts, vectors and
    each passage's sentences. Passage i depends only on (seed, i), so any slice can be rebuilt."""
    texts: list[str] = []
    parts: list[list[str]] = []
    vectors = np.zeros((count, bank.vectors.shape[1]), dtype=np.float32)
    lengths = np.array([len(s) for s in bank.sentences], dtype=np.float32)
    for j in range(count):
        rng = np.random.default_rng((seed, start + j))
        doc = int(rng.integers(bank.n_docs))
        lo, hi = int(bank.doc_offsets[doc]), int(bank.doc_offsets[doc + 1])
        size = min(int(rng.integers(3, 9)), hi - lo)
        first = lo + int(rng.integers(0, hi - lo - size + 1))
        rows = list(range(first, first + size))
        if rng.random() < 0.5:
            other = int(neighbours[doc, rng.integers(neighbours.shape[1])])
            olo, ohi = int(bank.doc_offsets[other]), int(bank.doc_offsets[other + 1])
            rows += [
                int(r) for r in rng.choice(np.arange(olo, ohi), size=min(int(rng.integers(1, 3)), ohi - olo))
            ]
        weights = lengths[rows]
        mixed = (bank.vectors[rows] * weights[:, None]).sum(axis=0) / weights.sum()
        mixed = mixed / np.linalg.norm(mixed) + rng.normal(scale=NOISE, size=mixed.shape)
        vectors[j] = mixed / np.linalg.norm(mixed)
        chosen = [bank.sentences[r] for r in rows]
        parts.append(chosen)
        texts.append(" ".join(chosen))
    return texts, vectors, parts


if __name__ == "__main__":  # embed once ahead of the benchmark: python -m mdp.bench.scale_corpus
    from mdp.bench import shared_data_dir

    bank = load_sentence_bank(shared_data_dir() / "scifact")
    print(len(bank.sentences), "sentences,", bank.n_docs, "abstracts,", len(bank.queries), "claims")
