"""Search structures that live beside the store, so that opening a large index loads almost nothing.

A *base* is built from one version of the chunks table and kept on disk, memory-mapped when read:

- ``rowids.npy``: the LanceDB row id of every base row (ascending; row ids are the keys of search);
- ``bm25/``: a bm25s index of the rows' analysed texts (``BM25.save``, loaded with ``mmap=True``);
- ``vectors.npy``: the rows' vectors (float32), used by exact search;
- ``sentences-<model>/``: optionally each row's sentence vectors (CSR: ``offsets.npy``, ``vectors.npy``;
  a row without sentence vectors holds its own vector), for hybrid search's best-sentence list.

A later version differs from the base by a *delta*: rows whose row id is not in the base (written
since: LanceDB appends new and replaced rows as new rows) and base rows that are gone (deleted or
replaced), which are masked. Row ids stay valid until the table is compacted; compaction (the
nightly ``optimize``) and large writes rebuild the base (:func:`maintain`). The delta is read at
open and on every version change; it holds only the changed rows, so its cost follows the size of
the change, not of the index.

BM25 scores of delta rows come from :class:`DeltaBM25`, which applies bm25s' formula with the
base's statistics (document count, document frequencies, average length), as Lucene scores new
segments before a merge: base rows keep bm25s' exact scores, a changed row scores as it would had
the statistics not moved. Document frequencies are refreshed at the next rebuild.

Vector search is exact (the memory-mapped base vectors and the delta's, by dot product) up to
``RetrievalConfig.approximate_above`` rows, and above it LanceDB's ANN index (IVF_PQ or
IVF_HNSW_SQ) with an exact re-rank of its candidates from the stored vectors (``refine_factor``).
docs/retrieval.md says what each costs.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import scipy.sparse as sp
import Stemmer
from bm25s.stopwords import STOPWORDS_EN
from filelock import FileLock

from mdp.config import RetrievalConfig
from mdp.schemas import text_hash
from mdp.sentences import chunk_sentences
from mdp.store import CHUNKS, VectorStore
from mdp.store.lance import is_local, local_path

FORMAT = 1
SEARCH_DIR = "_mdp_search"
BUILD_BATCH = 20_000
DELTA_METHODS = ("lucene", "robertson", "atire")  # bm25s methods DeltaBM25 reproduces
VECTOR_INDEX_NAME = "vector_idx"

Log = Callable[[str], None]


# ------------------------------------------------------------------ analysis
_TOKEN = re.compile(r"(?u)\b\w\w+\b")


class Analyzer:
    """Lower-case word tokens (2+ characters), stop words removed, Snowball-stemmed."""

    def __init__(self, stemmer: str | None = "english", stopwords: bool = True):
        self._stemmer = Stemmer.Stemmer(stemmer) if stemmer else None
        self._stop = frozenset(STOPWORDS_EN) if stopwords else frozenset()

    def __call__(self, text: str) -> list[str]:
        tokens = [t for t in _TOKEN.findall(text.lower()) if t not in self._stop]
        return self._stemmer.stemWords(tokens) if self._stemmer is not None else tokens

    def to_ids(self, texts: Sequence[str], vocab: dict[str, int]) -> list[list[int]]:
        """Token ids of many texts, growing ``vocab``; each distinct word is stemmed once."""
        seen: dict[str, int] = {}  # word -> term id, -1 for a stop word
        out = []
        for text in texts:
            row = []
            for word in _TOKEN.findall(text.lower()):
                tid = seen.get(word)
                if tid is None:
                    if word in self._stop:
                        tid = -1
                    else:
                        term = self._stemmer.stemWord(word) if self._stemmer is not None else word
                        tid = vocab.setdefault(term, len(vocab))
                    seen[word] = tid
                if tid >= 0:
                    row.append(tid)
            out.append(row)
        return out


def analyzer_key(config: RetrievalConfig) -> str:
    """What a base's BM25 part depends on: a base is shared by every config with the same key."""
    parts = [FORMAT, config.bm25_k1, config.bm25_b, config.bm25_method, config.stemmer, config.stopwords]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:12]


class TokenRows(Sequence[list[int]]):
    """Token ids of many texts in one flat int32 buffer; rows come out as short lists on demand,
    so that bm25s can index a million texts without a million Python lists held at once."""

    def __init__(self, flat: np.ndarray, offsets: np.ndarray):
        self.flat = flat
        self.offsets = offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):  # type: ignore[override]
        return self.flat[self.offsets[i] : self.offsets[i + 1]].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        for i in range(len(self)):
            yield self.flat[self.offsets[i] : self.offsets[i + 1]].tolist()

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def _flatten(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for r in rows])
    flat = np.fromiter((t for r in rows for t in r), dtype=np.int32, count=int(offsets[-1]))
    return flat, offsets


# ------------------------------------------------------------------ BM25 of the delta
class DeltaBM25:
    """bm25s' scoring (methods lucene, robertson, atire) of a few rows with someone else's statistics.

    ``doc_freqs[t]`` and ``n_docs`` are the base's; terms the base never saw (ids past its vocabulary)
    take their document frequency from these rows. ``tests/test_search_index.py`` checks that with
    the statistics of the same rows it returns bm25s' own scores.
    """

    def __init__(
        self,
        rows: TokenRows,
        n_terms: int,
        doc_freqs: np.ndarray,
        n_docs: int,
        avg_len: float,
        k1: float,
        b: float,
        method: str,
    ):
        if method not in DELTA_METHODS:
            raise ValueError(f"DeltaBM25 supports {DELTA_METHODS}, not {method!r}")
        self.n_rows = len(rows)
        lengths = rows.lengths().astype(np.float32)
        doc = np.repeat(np.arange(self.n_rows, dtype=np.int64), np.diff(rows.offsets))
        tf = sp.csc_matrix(
            (np.ones(len(rows.flat), dtype=np.float32), (doc, rows.flat.astype(np.int64))),
            shape=(self.n_rows, max(n_terms, 1)),
        )
        tf.sum_duplicates()
        self.tf = tf
        df = np.zeros(tf.shape[1], dtype=np.float64)
        df[: len(doc_freqs)] = doc_freqs
        own_df = np.diff(tf.indptr)
        unseen = df == 0
        df[unseen] = own_df[unseen]
        n = float(n_docs)
        with np.errstate(divide="ignore", invalid="ignore"):
            if method == "lucene":
                idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
            elif method == "robertson":
                idf = np.log(np.maximum((n - df + 0.5) / (df + 0.5), 1.0))
            else:  # atire
                idf = np.log(n / df)
        self.idf = np.where(df > 0, idf, 0.0).astype(np.float32)
        self.norm = (k1 * ((1 - b) + b * lengths / np.float32(avg_len))).astype(np.float32)
        self.k1 = np.float32(k1)
        self.method = method

    def scores(self, token_ids: Sequence[int]) -> np.ndarray:
        out = np.zeros(self.n_rows, dtype=np.float32)
        for t in token_ids:
            if t >= self.tf.shape[1]:
                continue
            start, end = self.tf.indptr[t], self.tf.indptr[t + 1]
            rows = self.tf.indices[start:end]
            tf = self.tf.data[start:end]
            if self.method == "atire":
                tfc = tf * (self.k1 + 1) / (tf + self.norm[rows])
            else:
                tfc = tf / (self.norm[rows] + tf)
            out[rows] += self.idf[t] * tfc
        return out


# ------------------------------------------------------------------ the base on disk
def search_root(store: VectorStore) -> Path:
    """Where a store's bases live: inside a local store's folder, else in a local cache folder."""
    if is_local(store.uri):
        return local_path(store.uri) / SEARCH_DIR
    digest = hashlib.sha256(store.uri.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"mdp-search-{digest}"


def _model_dir(model_key: str) -> str:
    return "sentences-" + hashlib.sha256(model_key.encode()).hexdigest()[:12]


@dataclass
class Base:
    path: Path
    meta: dict[str, Any]
    rowids: np.ndarray
    bm25: bm25s.BM25
    vectors: np.ndarray
    sentence_offsets: np.ndarray | None = None
    sentence_vectors: np.ndarray | None = None
    doc_freqs: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def version(self) -> int:
        return int(self.meta["version"])

    @property
    def vocab(self) -> dict[str, int]:
        return self.bm25.vocab_dict

    @classmethod
    def load(cls, path: Path, model_key: str | None = None) -> Base:
        meta = json.loads((path / "meta.json").read_text())
        bm25 = bm25s.BM25.load(str(path / "bm25"), mmap=True)
        indptr = np.asarray(bm25.scores["indptr"])
        base = cls(
            path=path,
            meta=meta,
            rowids=np.load(path / "rowids.npy", mmap_mode="r"),
            bm25=bm25,
            vectors=np.load(path / "vectors.npy", mmap_mode="r"),
            doc_freqs=np.diff(indptr),
        )
        if model_key is not None:
            folder = path / _model_dir(model_key)
            if (folder / "meta.json").exists():
                base.sentence_offsets = np.load(folder / "offsets.npy", mmap_mode="r")
                base.sentence_vectors = np.load(folder / "vectors.npy", mmap_mode="r")
        return base

    def sentences_meta(self, model_key: str) -> dict[str, Any] | None:
        file = self.path / _model_dir(model_key) / "meta.json"
        return json.loads(file.read_text()) if file.exists() else None

    def __len__(self) -> int:
        return len(self.rowids)


def _scan_batches(table: Any, columns: list[str], batch: int) -> Iterator[Any]:
    """The rows of a checked-out table in row-id order, ``batch`` rows at a time, with ``_rowid``.
    (LanceDB's ``to_batches`` collects the whole result first; ``take_offsets`` does not.)"""
    n = int(table.count_rows())
    last = -1
    for start in range(0, n, batch):
        offsets = list(range(start, min(n, start + batch)))
        data = table.take_offsets(offsets).with_row_id().select(columns).to_arrow()
        data = data.sort_by("_rowid").combine_chunks()
        ids = data.column("_rowid").to_numpy()
        if len(ids) and int(ids[0]) <= last:
            raise RuntimeError("search index: a scan by offsets did not come in row-id order")
        last = int(ids[-1]) if len(ids) else last
        yield from data.to_batches()


def build_base(
    store: VectorStore,
    version: int,
    config: RetrievalConfig,
    model_key: str | None = None,
    log: Log | None = None,
) -> Path:
    """Build a base from ``version`` of the chunks table, streaming it ``BUILD_BATCH`` rows at a
    time; returns its folder. Peak memory: bm25s' index of the whole corpus (about 12 bytes per
    distinct term of each row) plus one batch."""
    say = log or (lambda _m: None)
    started = time.perf_counter()
    table = store.checkout(version)
    n = int(table.count_rows())
    dim = int(table.schema.field("vector").type.list_size)
    root = search_root(store) / analyzer_key(config)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".build-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        analyzer = Analyzer(config.stemmer, config.stopwords)
        vocab: dict[str, int] = {}
        vectors = np.lib.format.open_memmap(tmp / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, dim))
        rowids = np.zeros(n, dtype=np.uint64)
        flats: list[np.ndarray] = []
        lengths: list[np.ndarray] = []
        sentences = _SentenceWriter(store, model_key, dim) if model_key else None
        done = 0
        for batch in _scan_batches(table, ["text", "vector"], BUILD_BATCH):
            count = batch.num_rows
            texts = batch.column("text").to_pylist()
            rowids[done : done + count] = batch.column("_rowid").to_numpy()
            matrix = batch.column("vector").flatten().to_numpy(zero_copy_only=False).reshape(count, dim)
            vectors[done : done + count] = matrix
            flat, offsets = _flatten(analyzer.to_ids(texts, vocab))
            flats.append(flat)
            lengths.append(np.diff(offsets))
            if sentences is not None:
                sentences.add(texts, matrix)
            done += count
            say(f"search index: read {done:,}/{n:,} rows")
        if done != n:
            raise RuntimeError(f"search index: read {done} rows of version {version}, expected {n}")
        vectors.flush()
        del vectors
        order = np.argsort(rowids, kind="stable")
        if not np.array_equal(order, np.arange(n)):  # scans come in row-id order; keep the invariant
            raise RuntimeError("search index: the scan did not return rows in row-id order")
        offsets = np.zeros(n + 1, dtype=np.int64)
        if lengths:
            offsets[1:] = np.cumsum(np.concatenate(lengths))
        rows = TokenRows(np.concatenate(flats) if flats else np.zeros(0, np.int32), offsets)
        del flats
        if not vocab:
            vocab[""] = 0
        bm25 = bm25s.BM25(k1=config.bm25_k1, b=config.bm25_b, method=config.bm25_method)
        say(f"search index: BM25 over {n:,} rows")
        bm25.index(bm25s.tokenization.Tokenized(ids=rows, vocab=vocab), show_progress=False)
        bm25.save(str(tmp / "bm25"))
        np.save(tmp / "rowids.npy", rowids)
        meta = {
            "format": FORMAT,
            "version": int(version),
            "rows": n,
            "dim": dim,
            "avg_len": float(rows.lengths().mean()) if n else 1.0,
            "analyzer": analyzer_key(config),
            "version_written_at": _version_written_at(store, version),
            "built_at": time.time(),
            "build_s": round(time.perf_counter() - started, 2),
        }
        del bm25, rows
        if sentences is not None and model_key is not None:
            sentences.finish(tmp / _model_dir(model_key), model_key)
        (tmp / "meta.json").write_text(json.dumps(meta))
        final = root / f"v{version}-{uuid.uuid4().hex[:8]}"
        tmp.rename(final)
        (root / "CURRENT.tmp").write_text(final.name)
        (root / "CURRENT.tmp").replace(root / "CURRENT")
        _remove_old_bases(root, keep=final.name)
        say(f"search index: built in {time.perf_counter() - started:.1f} s ({n:,} rows)")
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove_old_bases(root: Path, keep: str) -> None:
    """Older bases go once a newer one is current (a reader that has one open keeps its mapped
    files: unlinking does not unmap them)."""
    for child in root.iterdir():
        if child.is_dir() and child.name != keep and child.name.startswith("v"):
            shutil.rmtree(child, ignore_errors=True)


class _SentenceWriter:
    """Sentence vectors of the base rows, looked up in the embedding cache a batch at a time."""

    def __init__(self, store: VectorStore, model_key: str, dim: int):
        self.store = store
        self.model_key = model_key
        self.dim = dim
        self.tmp = tempfile.NamedTemporaryFile(prefix="mdp-sentences-", suffix=".f32", delete=False)  # noqa: SIM115
        self.counts: list[int] = []
        self.missing = 0
        self.found = 0  # real sentence vectors (rows without any hold their own vector instead)
        self.rows = 0

    def add(self, texts: list[str], chunk_vectors: np.ndarray) -> None:
        wanted = [[text_hash(s) for s in chunk_sentences(t)] for t in texts]
        cached = self.store.get_cached(self.model_key, [h for hs in wanted for h in hs])
        for hashes, own in zip(wanted, chunk_vectors, strict=True):
            found = [cached[h] for h in hashes if h in cached]
            self.missing += len(hashes) - len(found)
            self.found += len(found)
            block = np.stack(found) if found else own[None, :]
            self.tmp.write(np.ascontiguousarray(block, dtype=np.float32).tobytes())
            self.counts.append(len(block))
            self.rows += len(block)

    def finish(self, folder: Path, model_key: str) -> None:
        self.tmp.close()
        folder.mkdir()
        offsets = np.zeros(len(self.counts) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(self.counts)
        np.save(folder / "offsets.npy", offsets)
        raw = np.memmap(self.tmp.name, dtype=np.float32, mode="r", shape=(self.rows, self.dim))
        out = np.lib.format.open_memmap(folder / "vectors.npy", mode="w+", dtype=np.float32, shape=raw.shape)
        for start in range(0, self.rows, 200_000):
            out[start : start + 200_000] = raw[start : start + 200_000]
        out.flush()
        del out, raw
        Path(self.tmp.name).unlink()
        meta = {
            "model_key": model_key,
            "missing": self.missing,
            "found": self.found,
            "cache_version": self.store.cache_version(),
        }
        (folder / "meta.json").write_text(json.dumps(meta))


def _current_name(root: Path) -> str | None:
    try:
        return (root / "CURRENT").read_text().strip()
    except OSError:
        return None


def current_base(store: VectorStore, config: RetrievalConfig, model_key: str | None = None) -> Base | None:
    root = search_root(store) / analyzer_key(config)
    name = _current_name(root)
    try:
        return Base.load(root / name, model_key) if name else None
    except (OSError, ValueError, KeyError):
        return None


def open_base(
    store: VectorStore,
    version: int,
    config: RetrievalConfig,
    model_key: str | None,
    previous: Base | None = None,
    log: Log | None = None,
) -> tuple[Base, np.ndarray, np.ndarray, bool]:
    """The base to search ``version`` from, with its live mask and the row ids past it:
    ``previous`` while it is still the current one, else the current one on disk, else built now.
    A base is rebuilt when it lacks what is asked for, or when its delta outgrew
    ``delta_rebuild_rows`` rows (or any delta, for bm25s methods DeltaBM25 does not reproduce).
    One process builds at a time (a file lock); the others then take its result. Returns
    ``(base, live, new_rowids, built)``."""
    root = search_root(store) / analyzer_key(config)
    current = live_rowids(store.checkout(version))

    def usable(base: Base | None) -> tuple[np.ndarray, np.ndarray] | None:
        if base is None or not base_is_usable(store, base, model_key):
            return None
        live, new = split_delta(np.asarray(base.rowids), current)
        changed = len(new) + int((~live).sum())
        if changed > config.delta_rebuild_rows or (len(new) and config.bm25_method not in DELTA_METHODS):
            return None
        return live, new

    name = _current_name(root)
    base = previous if previous is not None and previous.path.name == name else None
    base = base or current_base(store, config, model_key)
    found = usable(base)
    if found is not None and base is not None:
        return base, *found, False
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".build.lock")):
        base = current_base(store, config, model_key)  # another process may have built it meanwhile
        found = usable(base)
        if found is None or base is None:
            build_base(store, version, config, model_key, log)
            base = current_base(store, config, model_key)
            found = usable(base)
        if base is None or found is None:
            raise RuntimeError(f"the search index of {store.uri} could not be built at version {version}")
    return base, *found, True


# ------------------------------------------------------------------ what changed since the base
def live_rowids(table: Any) -> np.ndarray:
    """Row ids of every row of a checked-out table, ascending (8 bytes a row)."""
    data = table.search().select(["position"]).with_row_id(True).limit(None).to_arrow()
    ids = data.column("_rowid").to_numpy() if data.num_rows else np.zeros(0, dtype=np.uint64)
    return np.sort(ids) if len(ids) > 1 and np.any(ids[1:] < ids[:-1]) else ids


def split_delta(base_rowids: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(base rows still live as a bool mask, row ids that are not in the base); both inputs sorted."""
    if len(base_rowids) == 0:
        return np.zeros(0, dtype=bool), current
    pos = np.searchsorted(current, base_rowids)
    pos_clipped = np.minimum(pos, max(len(current) - 1, 0))
    live = (
        (pos < len(current)) & (current[pos_clipped] == base_rowids)
        if len(current)
        else np.zeros(len(base_rowids), dtype=bool)
    )
    pos = np.searchsorted(base_rowids, current)
    pos_clipped = np.minimum(pos, len(base_rowids) - 1)
    known = (pos < len(base_rowids)) & (base_rowids[pos_clipped] == current)
    return live, current[~known]


@dataclass
class Delta:
    """The rows of one version that the base does not hold, in row-id order."""

    rowids: np.ndarray
    token_flat: np.ndarray
    token_offsets: np.ndarray
    vectors: np.ndarray
    extra_vocab: dict[str, int]  # terms the base never saw -> ids past its vocabulary
    sentence_offsets: np.ndarray | None = None
    sentence_vectors: np.ndarray | None = None
    missing_sentences: int = 0
    sentences_found: int = 0  # real sentence vectors among the delta's rows (upper bound after removals)

    @classmethod
    def empty(cls, dim: int, with_sentences: bool) -> Delta:
        return cls(
            rowids=np.zeros(0, dtype=np.uint64),
            token_flat=np.zeros(0, dtype=np.int32),
            token_offsets=np.zeros(1, dtype=np.int64),
            vectors=np.zeros((0, dim), dtype=np.float32),
            extra_vocab={},
            sentence_offsets=np.zeros(1, dtype=np.int64) if with_sentences else None,
            sentence_vectors=np.zeros((0, dim), dtype=np.float32) if with_sentences else None,
        )

    def __len__(self) -> int:
        return len(self.rowids)

    def rows(self) -> TokenRows:
        return TokenRows(self.token_flat, self.token_offsets)


def _csr_take(offsets: np.ndarray, values: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = (offsets[rows + 1] - offsets[rows]) if len(rows) else np.zeros(0, dtype=np.int64)
    new_offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    new_offsets[1:] = np.cumsum(counts)
    if not len(rows) or new_offsets[-1] == 0:
        return new_offsets, values[:0]
    starts = offsets[rows]
    picked = np.repeat(starts - new_offsets[:-1], counts) + np.arange(int(new_offsets[-1]))
    return new_offsets, values[picked]


def read_delta(
    table: Any,
    wanted: np.ndarray,
    previous: Delta | None,
    base: Base,
    analyzer: Any,
    store: VectorStore,
    model_key: str | None,
) -> Delta:
    """The delta for row ids ``wanted`` (sorted): rows the previous delta already holds are reused,
    the others are read from the table (``take_row_ids``) and analysed."""
    dim = base.vectors.shape[1]
    with_sentences = model_key is not None
    previous = previous or Delta.empty(dim, with_sentences)
    keep_mask = np.isin(previous.rowids, wanted)
    keep = np.flatnonzero(keep_mask)
    fresh = wanted[~np.isin(wanted, previous.rowids)]
    extra = dict(previous.extra_vocab)
    vocab = base.vocab
    flat_keep_offsets, flat_keep = _csr_take(previous.token_offsets, previous.token_flat, keep)
    new_rows: list[list[int]] = []
    new_vectors = np.zeros((len(fresh), dim), dtype=np.float32)
    sentence_blocks: list[np.ndarray] = []
    missing = 0
    found_total = previous.sentences_found
    if len(fresh):
        got: dict[int, tuple[str, np.ndarray]] = {}
        for start in range(0, len(fresh), 5_000):
            part = [int(r) for r in fresh[start : start + 5_000]]
            data = table.take_row_ids(part).with_row_id().select(["text", "vector"]).to_arrow()
            vecs = data["vector"].combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
            for rid, text, vec in zip(
                data["_rowid"].to_pylist(), data["text"].to_pylist(), vecs, strict=True
            ):
                got[rid] = (text, vec)
        texts = [got[int(r)][0] for r in fresh]
        new_vectors[:] = np.stack([got[int(r)][1] for r in fresh]) if len(fresh) else new_vectors
        for words in (analyzer(t) for t in texts):
            row = []
            for w in words:
                tid = vocab.get(w)
                if tid is None:
                    tid = extra.setdefault(w, len(vocab) + len(extra))
                row.append(tid)
            new_rows.append(row)
        if with_sentences:
            wanted_hashes = [[text_hash(s) for s in chunk_sentences(t)] for t in texts]
            cached = store.get_cached(model_key, [h for hs in wanted_hashes for h in hs])  # type: ignore[arg-type]
            for hashes, own in zip(wanted_hashes, new_vectors, strict=True):
                found = [cached[h] for h in hashes if h in cached]
                missing += len(hashes) - len(found)
                found_total += len(found)
                sentence_blocks.append(np.stack(found) if found else own[None, :])
    fresh_flat, fresh_offsets = _flatten(new_rows)
    rowids = np.concatenate([previous.rowids[keep], fresh])
    token_flat = np.concatenate([flat_keep, fresh_flat])
    token_offsets = np.concatenate([flat_keep_offsets, flat_keep_offsets[-1] + fresh_offsets[1:]])
    vectors = np.concatenate([previous.vectors[keep], new_vectors])
    s_offsets = s_vectors = None
    if with_sentences:
        assert previous.sentence_offsets is not None and previous.sentence_vectors is not None
        keep_s_offsets, keep_s = _csr_take(previous.sentence_offsets, previous.sentence_vectors, keep)
        counts = [len(b) for b in sentence_blocks]
        fresh_s_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        s_offsets = np.concatenate([keep_s_offsets, keep_s_offsets[-1] + fresh_s_offsets[1:]])
        blocks = [keep_s, *sentence_blocks]
        s_vectors = np.ascontiguousarray(np.concatenate(blocks), dtype=np.float32) if blocks else keep_s
    order = np.argsort(rowids, kind="stable")
    delta = Delta(
        rowids, token_flat, token_offsets, vectors, extra, s_offsets, s_vectors, missing, found_total
    )
    if not np.array_equal(order, np.arange(len(order))):
        delta = _reorder(delta, order)
    return delta


def _reorder(delta: Delta, order: np.ndarray) -> Delta:
    offsets, flat = _csr_take(delta.token_offsets, delta.token_flat, order)
    s_offsets = s_vectors = None
    if delta.sentence_offsets is not None and delta.sentence_vectors is not None:
        s_offsets, s_vectors = _csr_take(delta.sentence_offsets, delta.sentence_vectors, order)
    return Delta(
        delta.rowids[order],
        flat,
        offsets,
        delta.vectors[order],
        delta.extra_vocab,
        s_offsets,
        s_vectors,
        delta.missing_sentences,
        delta.sentences_found,
    )


# ------------------------------------------------------------------ approximate vector search
def vector_mode(config: RetrievalConfig, rows: int) -> str:
    """ "exact" or "approximate" for an index of ``rows`` chunks under ``config``."""
    if config.vector_search != "auto":
        return config.vector_search
    return "approximate" if rows > config.approximate_above else "exact"


def ann_index_config(config: RetrievalConfig, rows: int) -> Any:
    from lancedb.index import IvfHnswSq, IvfPq

    if config.ann_index == "ivf_hnsw_sq":
        # few large partitions: each probed partition costs one HNSW search (ef candidates)
        return IvfHnswSq(distance_type="dot", num_partitions=max(1, rows // 250_000), ef_construction=150)
    partitions = max(1, min(4096, int(round(np.sqrt(max(rows, 1))))))  # LanceDB's advice for IVF_PQ
    return IvfPq(distance_type="dot", num_partitions=partitions, num_sub_vectors=config.ann_sub_vectors)


def vector_index_info(store: VectorStore) -> dict[str, Any] | None:
    """The chunks table's vector index: type, indexed and unindexed rows; None without one."""
    try:
        table = store.lance_table(CHUNKS)
    except LookupError:
        return None
    for index in table.list_indices():
        if list(index.columns) == ["vector"]:
            stats = table.index_stats(index.name)
            return {
                "name": index.name,
                "type": str(stats.index_type) if stats else str(index.index_type),
                "indexed_rows": int(stats.num_indexed_rows) if stats else 0,
                "unindexed_rows": int(stats.num_unindexed_rows) if stats else 0,
            }
    return None


def build_vector_index(store: VectorStore, config: RetrievalConfig, log: Log | None = None) -> dict[str, Any]:
    """(Re)train the ANN index of the chunks table for ``config.ann_index``."""
    table = store.lance_table(CHUNKS)
    rows = int(table.count_rows())
    started = time.perf_counter()
    table.create_index("vector", config=ann_index_config(config, rows), replace=True, name=VECTOR_INDEX_NAME)
    seconds = time.perf_counter() - started
    if log:
        log(f"search index: {config.ann_index} over {rows:,} rows in {seconds:.1f} s")
    return {"ann_index": config.ann_index, "rows": rows, "build_s": round(seconds, 2)}


def _version_written_at(store: VectorStore, version: int) -> str | None:
    """When ``version`` of the chunks table was committed: with its number, it tells this store's
    version apart from the same number of a store deleted and made again at the same URI. Read from
    LanceDB's version list alone (``store.versions()`` would also count rows per version)."""
    for info in store.lance_table().list_versions():
        if int(info["version"]) == int(version):
            return str(info["timestamp"])
    return None


def base_is_usable(store: VectorStore, base: Base, model_key: str | None) -> bool:
    """Whether ``base`` describes this store, and can serve a search that uses ``model_key``'s
    sentence vectors (None: none)."""
    # A remote store's base lives in a local cache folder that outlives the store: check that the
    # version it was built from is this store's (row ids of another store mean other rows).
    remote = not is_local(store.uri)
    if remote and base.meta.get("version_written_at") != _version_written_at(store, base.version):
        return False
    if model_key is None:
        return True
    meta = base.sentences_meta(model_key)
    if meta is None:
        return False
    # sentence vectors were missing at build and the cache has changed since: build again
    return not (meta["missing"] and meta["cache_version"] != store.cache_version())


def sentence_model_key(store: VectorStore) -> str | None:
    """The model of the store's latest write, as the embedding cache keys it."""
    log = store.version_log()
    if not len(log):
        return None
    last = log.sort_values("version").iloc[-1]
    return f"{last['model_id']}@{last['model_version']}" if last["model_id"] else None


def maintain(
    store: VectorStore,
    config: RetrievalConfig,
    model_key: str | None = None,
    *,
    compacted: bool = False,
    log: Log | None = None,
) -> dict[str, Any]:
    """Keep the search structures in step with the store (after a write, and after compaction).

    - the ANN index exists when search is approximate, is (re)trained when missing or of the other
      type, and is brought up to date (LanceDB's ``optimize``, which also compacts) when more than
      ``delta_rebuild_rows`` rows are not indexed;
    - the base is rebuilt when it is missing, after compaction, or when its delta outgrew
      ``delta_rebuild_rows`` rows;
    - scalar indexes for the store's own lookups (``VectorStore.ensure_scalar_indexes``).
    """
    done: dict[str, Any] = {}
    version = store.version()
    if not version:
        return done
    table = store.lance_table(CHUNKS)
    rows = int(table.count_rows())
    done["scalar_indexes"] = store.ensure_scalar_indexes()
    if vector_mode(config, rows) == "approximate":
        info = vector_index_info(store)
        wanted = "IVF_HNSW_SQ" if config.ann_index == "ivf_hnsw_sq" else "IVF_PQ"
        if info is None or wanted.replace("_", "").lower() not in info["type"].replace("_", "").lower():
            done["vector_index"] = build_vector_index(store, config, log)
        elif info["unindexed_rows"] > config.delta_rebuild_rows:
            store.optimize_table(CHUNKS)
            compacted = True
            done["vector_index"] = {"optimized": info["unindexed_rows"]}
        version = store.version()
    if compacted:  # row ids moved: whatever base exists describes another layout
        build_base(store, version, config, model_key, log)
        done["base"] = {"version": version, "rebuilt": "after compaction"}
    else:
        base = current_base(store, config, model_key)
        # cheap bound first (the version log's counts): most writes are small and need no row scan
        small = base is not None and base_is_usable(store, base, model_key)
        small = small and store.rows_changed_since(base.version) <= config.delta_rebuild_rows  # type: ignore[union-attr]
        if not small:
            base, _, _, built = open_base(store, version, config, model_key, log=log)
            if built:
                done["base"] = {"version": base.version, "rebuilt": True}
    return done
