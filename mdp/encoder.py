"""Sentence encoder on MLX: a sentence-transformers folder in, L2-normalised float32 vectors out.

No torch at inference. Texts get the folder's prompt (``config_sentence_transformers.json``, or
``[model]`` overrides), are tokenized with the model's fast tokenizer, truncated the way
sentence-transformers truncates, grouped by length with ``mlx.data``'s dynamic batching (so a
batch holds about ``batch_tokens`` padded tokens and padding is minimal), run through
:class:`mdp.models.bert.Bert` on the configured device (``[model] device``: auto, cpu, gpu) and
pooled as the folder says. Reduced precision is used only after it passed a parity check against
float32 on real text (``info()`` records the result).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from mdp.blas import activate_openblas, blas_info
from mdp.config import ModelConfig

_BLAS = activate_openblas()  # must precede the first `import mlx.core` (see mdp/blas.py)

import mlx.core as mx  # noqa: E402
import mlx.data as dx  # noqa: E402

from mdp.kernels import KernelStatus  # noqa: E402
from mdp.kernels import resolve as resolve_kernels  # noqa: E402
from mdp.models.bert import Bert, BertConfig  # noqa: E402
from mdp.tokenizer import (  # noqa: E402
    default_model_path,
    load_tokenizer,
    max_seq_length,
    resolve_model_path,
)

if TYPE_CHECKING:
    from mdp.config import ModelConfig

DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
# On the CPU backend a batch's intermediates (attention scores: batch x heads x L x L floats) must
# stay in the last-level cache: 1024 padded tokens per batch measured 1.3-1.75x faster than 8192
# (docs/encoder.md). A configured batch_tokens is capped at this on the CPU.
CPU_BATCH_TOKENS = int(os.environ.get("MDP_CPU_BATCH_TOKENS", "1024"))
# A GPU wants large batches to fill its cores; its default when [model] batch_tokens is unset.
GPU_BATCH_TOKENS = int(os.environ.get("MDP_GPU_BATCH_TOKENS", "131072"))
# Every new (batch, length) shape costs a compile trace and, on CUDA, new kernel plans: on a GPU,
# lengths are padded up to a multiple of this and batch rows rounded up, so few shapes occur.
GPU_PAD_MULTIPLE = int(os.environ.get("MDP_GPU_PAD_MULTIPLE", "32"))
# Batches whose vectors stay on a GPU before one copy to the host, and batches queued ahead of
# the one the GPU is running (each holds its intermediates: a whole group ahead ran out of memory).
GPU_GROUP_BATCHES = 64
IN_FLIGHT_BATCHES = 2
# MLX keeps freed GPU buffers for reuse; unbounded, that cache grew until allocations failed
# (cudaMallocAsync out of memory on an H200 with 55k texts of many shapes). An encoder on a GPU
# lowers the process's cache limit to this unless it is lower already.
GPU_CACHE_LIMIT = int(os.environ.get("MDP_GPU_CACHE_LIMIT", str(8 << 30)))
# Texts per tokenizer call, and threads over such calls (the Rust tokenizer releases the GIL).
TOKENIZE_SLICE = 256
TOKENIZE_THREADS = max(1, min(16, (os.cpu_count() or 2) - 1))
# On a GPU, texts per length-sorted chunk: the next chunk is tokenized while this one runs.
PIPELINE_TEXTS = 2048
# Reduced precision must keep every text's vector this close (cosine) to float32's.
MIN_PARITY_COSINE = 0.999
DEVICES = ("auto", "cpu", "gpu")
_DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
GPU_MISSING = (
    '[model] device = "gpu" but MLX has no GPU backend here: on Linux with an NVIDIA GPU install '
    "the CUDA extra (`make setup-cuda`, or `pip install 'mdp[cuda]'`; `mdp doctor` checks it); "
    'on Apple silicon Metal is built in. Or set [model] device = "auto" or "cpu"'
)


def gpu_available() -> bool:
    """Whether MLX has a GPU backend here (CUDA or Metal)."""
    try:
        return bool(mx.is_available(mx.gpu))
    except (AttributeError, RuntimeError, ValueError):
        return False


def pick_device(requested: str, has_gpu: bool) -> str:
    """The device ("cpu" or "gpu") for ``[model] device``: auto picks the GPU when MLX has one."""
    if requested not in DEVICES:
        raise ValueError(f"[model] device {requested!r} not supported; use one of {', '.join(DEVICES)}")
    if requested == "gpu" and not has_gpu:
        raise RuntimeError(GPU_MISSING)
    if requested == "auto":
        return "gpu" if has_gpu else "cpu"
    return requested


@dataclass(frozen=True)
class DeviceProfile:
    """How the encoder batches and which model path it runs on one device."""

    device: str  # "cpu" or "gpu"
    batch_tokens: int  # padded tokens per batch
    pad_multiple: int  # sequence lengths padded up to a multiple of this
    compiled: bool  # the compiled (GPU) path of mdp/models/bert.py, else the CPU path


def device_profile(device: str, batch_tokens: int | None, max_tokens: int) -> DeviceProfile:
    """Per-device batch sizing: cache-sized batches on a CPU, large ones on a GPU."""
    if device == "cpu":
        budget = min(batch_tokens, CPU_BATCH_TOKENS) if batch_tokens else CPU_BATCH_TOKENS
        return DeviceProfile("cpu", max(budget, max_tokens), 1, compiled=False)
    budget = batch_tokens or GPU_BATCH_TOKENS
    return DeviceProfile(device, max(budget, max_tokens), GPU_PAD_MULTIPLE, compiled=True)


def round_rows(rows: int) -> int:
    """Batch rows rounded up to a power of two below 64 and to a multiple of 64 above, so that the
    last, partial batch of each length shares its shape with other batches."""
    if rows <= 64:
        return 1 << max(rows - 1, 0).bit_length()
    return -(-rows // 64) * 64


def gpu_name() -> str:
    """The GPU's name as MLX reports it, "" without a GPU backend."""
    if not gpu_available():
        return ""
    try:
        return str(mx.device_info(mx.gpu).get("device_name", ""))
    except (AttributeError, RuntimeError, ValueError):
        return ""


def calibration_texts(limit: int = 64) -> list[str]:
    """Real English text for the reduced-precision parity check: paragraphs of the bundled corpus."""
    root = Path(__file__).resolve().parent / "sample_corpus"
    texts: list[str] = []
    for doc in sorted(root.rglob("*.md")):
        texts += [p.strip() for p in doc.read_text(encoding="utf-8").split("\n\n") if len(p.strip()) > 40]
    if len(texts) > limit:  # an even spread of lengths and topics
        step = len(texts) / limit
        texts = [texts[int(i * step)] for i in range(limit)]
    return texts


@lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(path: Path) -> str:
    """sha256 of a weights file; computed once per (path, size, mtime) in this process."""
    stat = path.stat()
    return _file_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")


def folder_prompts(model_dir: Path) -> tuple[str, str]:
    """(query prompt, document prompt) a sentence-transformers folder declares in
    ``config_sentence_transformers.json``: ``prompts["query"]`` for queries, the first of
    ``prompts["document"|"passage"|"corpus"]`` for documents, and ``default_prompt_name``'s prompt
    where a side has none (sentence-transformers applies it when no prompt is named)."""
    data = _read_json(model_dir / "config_sentence_transformers.json") or {}
    prompts = {str(k): str(v) for k, v in (data.get("prompts") or {}).items()}
    default_name = data.get("default_prompt_name")
    if default_name and default_name not in prompts:
        raise ValueError(
            f"{model_dir}/config_sentence_transformers.json: default_prompt_name {default_name!r} is not "
            f"one of its prompts ({', '.join(prompts) or 'none'}); fix the file or set [model] "
            "query_prompt and document_prompt"
        )
    default = prompts.get(default_name, "") if default_name else ""
    query = prompts.get("query", default)
    document = next((prompts[name] for name in DOCUMENT_PROMPT_NAMES if name in prompts), default)
    return query, document


class SentenceEncoder:
    """Encode texts with a sentence-transformers BERT folder on MLX.

    ``batch_tokens`` bounds padded tokens per batch (None: the device's default); ``dtype`` is the
    compute dtype (float32 by default; a reduced one is kept only if it passes the parity check);
    ``device`` is "auto", "cpu" or "gpu"; ``query_prompt``/``document_prompt`` override the
    folder's prompts (None keeps them, "" means none). ``kernels`` picks the CPU kernels: ``auto``
    (default, or ``MDP_KERNELS``), ``mdp_kernels`` or ``mlx`` (see :mod:`mdp.kernels`; they are float32
    only, so other dtypes use MLX ops). ``compiled`` forces the model path (tests run the GPU path on
    the CPU with it); None picks it by device.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        batch_tokens: int | None = None,
        dtype: str = "float32",
        device: str = "auto",
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        kernels: str | None = None,
        *,
        compiled: bool | None = None,
    ) -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"dtype {dtype!r} not supported; use one of {', '.join(_DTYPES)}")
        self.device = pick_device(device, gpu_available())
        self.mx_device = mx.Device(mx.gpu if self.device == "gpu" else mx.cpu, 0)
        self.model_dir = resolve_model_path(path)
        self.is_default = path is None or self.model_dir.resolve() == default_model_path().resolve()
        weights = self.model_dir / "model.safetensors"
        if not weights.exists():
            raise FileNotFoundError(f"{weights} missing: the encoder needs safetensors weights (no torch)")
        self.config = BertConfig.from_file(self.model_dir / "config.json")
        self.dim = self.config.hidden_size
        self.max_tokens = max_seq_length(self.model_dir)
        if self.max_tokens > self.config.max_position_embeddings:
            raise ValueError(f"max_seq_length {self.max_tokens} exceeds the model's position table")
        if batch_tokens is not None and batch_tokens < self.max_tokens:
            raise ValueError(f"batch_tokens ({batch_tokens}) must be >= max_tokens ({self.max_tokens})")
        profile = device_profile(self.device, batch_tokens, self.max_tokens)
        if compiled is not None and compiled != profile.compiled:
            multiple = GPU_PAD_MULTIPLE if compiled else 1
            profile = DeviceProfile(profile.device, profile.batch_tokens, multiple, compiled)
        self.profile = profile
        self.batch_tokens = int(batch_tokens) if batch_tokens is not None else profile.batch_tokens
        self.device_batch_tokens = profile.batch_tokens
        self.pooling, self.include_prompt = self._read_modules()
        self.tokenizer = load_tokenizer(self.model_dir)
        declared_query, declared_document = folder_prompts(self.model_dir)
        self.query_prompt = declared_query if query_prompt is None else query_prompt
        self.document_prompt = declared_document if document_prompt is None else document_prompt
        self.dtype_requested = dtype
        self.dtype = dtype
        self.parity_min_cosine = 1.0
        self.parity_texts = 0
        self.dtype_note = ""
        self._kernel_module, self.kernels = self._pick_kernels(kernels, dtype)
        if self.device == "gpu":
            previous = mx.set_cache_limit(GPU_CACHE_LIMIT)
            if previous < GPU_CACHE_LIMIT:  # the process chose a lower one: keep it
                mx.set_cache_limit(previous)
        with mx.stream(self.mx_device):
            self.model = self._load_model(weights, dtype)
            if dtype != "float32":
                self._check_reduced_precision(weights)
        self.model_id = self._model_id()
        self.model_version = weights_sha256(weights)[:12]
        if self.document_prompt:  # documents embed differently: their cache entries must not mix
            prompt_hash = hashlib.sha256(self.document_prompt.encode("utf-8")).hexdigest()[:6]
            self.model_version = f"{self.model_version}-p{prompt_hash}"

    @classmethod
    def from_config(cls, model: ModelConfig) -> SentenceEncoder:
        """The encoder ``[model]`` describes (path, batch_tokens, dtype, device, prompts)."""
        return cls(
            model.path,
            batch_tokens=model.batch_tokens,
            dtype=model.dtype,
            device=model.device,
            query_prompt=model.query_prompt,
            document_prompt=model.document_prompt,
        )

    def _pick_kernels(self, kernels: str | None, dtype: str) -> tuple[ModuleType | None, KernelStatus]:
        """The fused CPU kernels where they apply (the CPU path, float32), else MLX ops, and why."""
        if dtype != "float32" and kernels == "mdp_kernels":
            raise ValueError(f"mdp_kernels are float32-only; dtype {dtype!r} needs kernels='mlx' or 'auto'")
        if self.profile.compiled:
            return None, KernelStatus("mlx", "MLX ops: the compiled (GPU) path runs MLX's own kernels")
        module, status = resolve_kernels("mlx" if dtype != "float32" else kernels, self.mx_device)
        if dtype != "float32":
            status = replace(status, reason=f"MLX ops: mdp_kernels are float32-only (dtype {dtype})")
        return module, status

    def _load_model(self, weights: Path, dtype: str) -> Bert:
        kernels = self._kernel_module if dtype == "float32" else None
        model = Bert(self.config, fast_elementwise=not self.profile.compiled, fused_kernels=kernels)
        model.load_hf_weights(weights, dtype=_DTYPES[dtype])
        return model

    def _check_reduced_precision(self, weights: Path) -> None:
        """Keep a reduced dtype only if every calibration text's vector stays within
        MIN_PARITY_COSINE of float32's; else fall back to float32 and say why."""
        texts = calibration_texts()
        ids = self.token_ids(texts)
        reduced = self._encode_ids(ids, self.model)
        reference = self._encode_ids(ids, self._load_model(weights, "float32"))
        cosine = (reduced * reference).sum(axis=1)
        self.parity_min_cosine = float(cosine.min()) if len(cosine) else 1.0
        self.parity_texts = len(texts)
        if self.parity_min_cosine >= MIN_PARITY_COSINE:
            return
        self.dtype_note = (
            f"{self.dtype_requested} fell back to float32: min cosine {self.parity_min_cosine:.6f} "
            f"against float32 on {len(texts)} texts is below {MIN_PARITY_COSINE}"
        )
        warnings.warn(f"{self.model_dir}: {self.dtype_note}", RuntimeWarning, stacklevel=3)
        self.dtype = "float32"
        self.model = self._load_model(weights, "float32")

    # -- metadata ----------------------------------------------------------------------------

    def _read_modules(self) -> tuple[str, bool]:
        """(pooling mode, whether pooling includes the prompt's tokens). Vectors are always
        normalised: search scores them by dot product, whether or not the folder has a Normalize."""
        modules = _read_json(self.model_dir / "modules.json") or []
        pooling_dir = next(
            (m.get("path", "") for m in modules if str(m.get("type", "")).endswith(".Pooling")), "1_Pooling"
        )
        pooling_cfg = _read_json(self.model_dir / pooling_dir / "config.json")
        pooling_cfg = pooling_cfg or {"pooling_mode_mean_tokens": True}
        if pooling_cfg.get("pooling_mode_cls_token"):
            mode = "cls"
        elif pooling_cfg.get("pooling_mode_mean_tokens"):
            mode = "mean"
        else:
            enabled = [k for k, v in pooling_cfg.items() if k.startswith("pooling_mode") and v]
            raise ValueError(f"{self.model_dir}: pooling {enabled} not supported (mean or cls only)")
        return mode, bool(pooling_cfg.get("include_prompt", True))

    def _model_id(self) -> str:
        if self.is_default:
            return DEFAULT_MODEL_ID
        readme = self.model_dir / "README.md"
        if readme.exists():
            for line in readme.read_text(errors="replace").splitlines():
                if line.startswith("# ") and "/" in line:
                    return line[2:].strip()
        return self.model_dir.name

    def info(self) -> dict[str, str | int | float | bool]:
        """Scalars describing the encoder (for Dagster metadata and the embedding cache key)."""
        out: dict[str, str | int | float | bool] = {
            "model_id": self.model_id,
            "model_version": self.model_version,
            "dim": self.dim,
            "max_tokens": self.max_tokens,
            "dtype": self.dtype,
            "dtype_requested": self.dtype_requested,
            "device": str(self.mx_device),
            "gpu_name": gpu_name() if self.device == "gpu" else "",
            "model_path": "compiled" if self.profile.compiled else "cpu",
            "pooling": self.pooling,
            "normalize": True,
            "batch_tokens": self.batch_tokens,
            "device_batch_tokens": self.device_batch_tokens,
            "pad_multiple": self.profile.pad_multiple,
            "query_prompt": self.query_prompt,
            "document_prompt": self.document_prompt,
        }
        if self.dtype_requested != "float32":
            out["parity_min_cosine"] = round(self.parity_min_cosine, 6)
            out["parity_texts"] = self.parity_texts
            out["parity_threshold"] = MIN_PARITY_COSINE
            out["dtype_note"] = self.dtype_note
        out.update(blas_info())
        out.update(self.kernels.as_metadata())
        return out

    # -- encoding ----------------------------------------------------------------------------

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text as the model sees them: special tokens added, truncated like
        sentence-transformers (keep the first max_tokens - 1 tokens, then the final [SEP])."""
        return [ids for _, chunk in self._tokenized_chunks(list(texts), len(texts) or 1) for ids in chunk]

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=True)
        limit = self.max_tokens
        out = []
        for enc in encodings:
            ids = enc.ids
            if len(ids) > limit:
                ids = ids[: limit - 1] + ids[-1:] if enc.special_tokens_mask[-1] else ids[:limit]
            out.append(ids)
        return out

    def _tokenized_chunks(self, texts: list[str], chunk_texts: int) -> Iterator[tuple[int, list[list[int]]]]:
        """(offset, token ids) for consecutive chunks of about ``chunk_texts`` texts, in order.
        Slices of TOKENIZE_SLICE texts are tokenized on a thread pool (the Rust tokenizer releases
        the GIL), all submitted at once: while the caller runs one chunk on the device, the next
        chunks are being tokenized."""
        if len(texts) <= TOKENIZE_SLICE:
            yield 0, self._tokenize(texts)
            return
        pool = ThreadPoolExecutor(max_workers=TOKENIZE_THREADS)
        try:
            futures = [
                pool.submit(self._tokenize, texts[i : i + TOKENIZE_SLICE])
                for i in range(0, len(texts), TOKENIZE_SLICE)
            ]
            per_chunk = max(1, chunk_texts // TOKENIZE_SLICE)
            for first in range(0, len(futures), per_chunk):
                ids = [seq for future in futures[first : first + per_chunk] for seq in future.result()]
                yield first * TOKENIZE_SLICE, ids
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def prompt_length(self, prompt: str) -> int:
        """Leading tokens that a prompt occupies, as sentence-transformers counts them (the
        prompt's tokens with the start token, without the end token)."""
        return len(self.tokenizer.encode(prompt, add_special_tokens=True).ids) - 1 if prompt else 0

    def _batch_stream(self, ids: list[list[int]]) -> dx.Stream:
        """Length-sorted batches packed by ``mlx.data`` (input_ids, mask, index). On a GPU each
        length is first padded up to a multiple of ``pad_multiple`` (within the position table), so
        that few shapes occur."""
        multiple = self.profile.pad_multiple
        longest = self.config.max_position_embeddings
        samples = []
        for i, seq in enumerate(ids):
            width = min(-(-max(len(seq), 1) // multiple) * multiple, max(longest, len(seq)))
            tokens = np.zeros(width, dtype=np.int32)
            tokens[: len(seq)] = seq
            mask = np.zeros(width, dtype=np.int32)
            mask[: len(seq)] = 1
            samples.append({"input_ids": tokens, "mask": mask, "index": np.array([i], dtype=np.int64)})
        return (
            dx.buffer_from_vector(samples)
            .to_stream()
            .dynamic_batch(
                len(samples),
                "input_ids",
                max_data_size=self.device_batch_tokens,
                pad={"input_ids": 0, "mask": 0},
            )
            .prefetch(2, 1)
        )

    def _rows(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(input_ids, mask, index) of a batch; on a GPU with rows added up to :func:`round_rows`
        (no tokens, index -1) so that the last batch of a length shares its shape with others."""
        input_ids, mask, index = batch["input_ids"], batch["mask"], batch["index"].reshape(-1)
        rows = round_rows(len(index)) if self.profile.compiled else len(index)
        if rows > len(index):
            extra = rows - len(index)
            input_ids = np.concatenate([input_ids, np.zeros((extra, input_ids.shape[1]), np.int32)])
            mask = np.concatenate([mask, np.zeros((extra, mask.shape[1]), np.int32)])
            index = np.concatenate([index, np.full(extra, -1, dtype=index.dtype)])
        return input_ids, mask, index

    def _embed_batch(
        self, model: Bert, input_ids: np.ndarray, mask: np.ndarray, prompt_tokens: int = 0
    ) -> mx.array:
        ids = mx.array(input_ids)
        attention = mx.array(mask)
        hidden = model(ids, attention).astype(mx.float32)
        if self.pooling == "cls":
            pooled = hidden[:, 0, :]
        else:
            if prompt_tokens:  # the folder's Pooling has include_prompt = false
                attention = attention * (mx.arange(attention.shape[1]) >= prompt_tokens)
            weights = attention[..., None].astype(mx.float32)
            pooled = (hidden * weights).sum(axis=1) / mx.maximum(weights.sum(axis=1), 1e-9)
        norm = mx.sqrt((pooled * pooled).sum(axis=-1, keepdims=True))
        return pooled / mx.maximum(norm, 1e-12)

    def _dispatch(
        self, ids: list[list[int]], model: Bert, prompt_tokens: int, sink: _VectorSink, offset: int
    ) -> None:
        """Queue the batches of ``ids`` on the device; their vectors go to ``sink`` (rows from
        ``offset`` on). Nothing here waits for the device except the in-flight bound."""
        with mx.stream(self.mx_device):
            for batch in self._batch_stream(ids):
                input_ids, mask, index = self._rows(batch)
                vectors = self._embed_batch(model, input_ids, mask, prompt_tokens)
                mx.async_eval(vectors)
                sink.add(np.where(index >= 0, index + offset, -1), vectors)

    def _encode_ids(self, ids: list[list[int]], model: Bert) -> np.ndarray:
        """Vectors for token ids, in order (the parity check, tests and benchmarks)."""
        sink = _VectorSink(np.zeros((len(ids), self.dim), dtype=np.float32), self.profile.compiled)
        step = PIPELINE_TEXTS if self.profile.compiled else max(len(ids), 1)
        for offset in range(0, len(ids), step):
            self._dispatch(ids[offset : offset + step], model, 0, sink, offset)
        return sink.finish()

    def encode(self, texts: list[str], progress: bool = False, prompt: str | None = None) -> np.ndarray:
        """(len(texts), dim) float32, L2-normalised, in input order. Texts are documents: the
        document prompt goes first unless ``prompt`` names another ("" for none)."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of strings, not a string")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        prompt = self.document_prompt if prompt is None else prompt
        texts = [prompt + text for text in texts] if prompt else list(texts)
        prompt_tokens = 0 if self.include_prompt else self.prompt_length(prompt)
        # On a GPU, chunks are length-sorted on their own: while the device runs one chunk, the
        # next is tokenized (threads) and batched, and no chunk waits for its vectors to come back.
        chunk_texts = PIPELINE_TEXTS if self.profile.compiled else len(texts)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(texts), desc="embed", unit="text", file=sys.stderr)
        sink = _VectorSink(np.zeros((len(texts), self.dim), dtype=np.float32), self.profile.compiled, bar)
        try:
            for offset, ids in self._tokenized_chunks(texts, chunk_texts):
                self._dispatch(ids, self.model, prompt_tokens, sink, offset)
            return sink.finish()
        finally:
            if bar is not None:
                bar.close()

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Query vectors: like :meth:`encode`, with the query prompt."""
        return self.encode(texts, prompt=self.query_prompt)

    def flops_per_text(self, tokens: float) -> float:
        """Forward-pass FLOPs for one text of ``tokens`` tokens (matmuls only)."""
        return self.config.flops_per_token(int(round(tokens))) * tokens


class _VectorSink:
    """Collects batch vectors queued on the device into the output rows. Vectors stay on the device
    until a group of batches is done (one copy to the host per group, not a round trip per batch),
    and at most IN_FLIGHT_BATCHES batches run ahead of the one being waited for (each holds its
    intermediates in device memory until it is done: a whole group ahead ran out of memory)."""

    def __init__(self, out: np.ndarray, grouped: bool, bar: Any = None) -> None:
        self.out = out
        self.group = GPU_GROUP_BATCHES if grouped else 1
        self.bar = bar
        self.pending: list[tuple[np.ndarray, mx.array]] = []

    def add(self, index: np.ndarray, vectors: mx.array) -> None:
        self.pending.append((index, vectors))
        if len(self.pending) >= self.group:
            self.flush()
        elif len(self.pending) > IN_FLIGHT_BATCHES:
            mx.eval(self.pending[-1 - IN_FLIGHT_BATCHES][1])  # waits, copies nothing

    def flush(self) -> None:
        if not self.pending:
            return
        index = np.concatenate([i for i, _ in self.pending])
        parts = [v for _, v in self.pending]
        vectors = np.asarray(mx.concatenate(parts) if len(parts) > 1 else parts[0])
        keep = index >= 0
        self.out[index[keep]] = vectors[keep]
        if self.bar is not None:
            self.bar.update(int(keep.sum()))
        self.pending.clear()

    def finish(self) -> np.ndarray:
        self.flush()
        return self.out
