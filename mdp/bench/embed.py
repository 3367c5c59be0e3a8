"""Embedding throughput: the MLX encoder against sentence-transformers, same texts, same process.

The MLX encoder runs twice: with the kernels it uses by default (mdp_kernels' fused CPU kernels
when built, see mdp/kernels.py) and with MLX ops only. Runs alternate (fused, MLX ops, ST, fused,
...) so that load from other processes on a shared machine hits all alike; warm-up runs are
excluded; each reports its best round. ``torch``'s thread count is left at its default.
Run: ``python -m mdp.bench.embed [--quick]``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from mdp.blas import activate_openblas, measure_matmul_gflops

activate_openblas()  # before mlx.core is imported anywhere in this process

from mdp.encoder import SentenceEncoder  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SCIFACT_CORPUS = REPO.parent / "shared" / "data" / "scifact" / "corpus.jsonl"


def default_texts(limit: int) -> list[str]:
    """SciFact abstracts (title + text) when the shared data is present, else the bundled corpus's
    Markdown paragraphs."""
    texts: list[str] = []
    if SCIFACT_CORPUS.exists():
        with SCIFACT_CORPUS.open() as fh:
            for line in fh:
                if not line.strip():
                    continue
                record = json.loads(line)
                texts.append(f"{record.get('title', '')} {record.get('text', '')}".strip())
                if len(texts) >= limit:
                    break
        return texts
    for doc in sorted((REPO / "mdp" / "sample_corpus").rglob("*.md")):
        texts.extend(p.strip() for p in doc.read_text().split("\n\n") if len(p.strip()) > 40)
    if not texts:
        raise RuntimeError("no benchmark texts: neither SciFact nor the bundled corpus was found")
    while len(texts) < limit:
        texts = texts + texts
    return texts[:limit]


def _timed(fn: object, texts: list[str]) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = fn(texts)  # type: ignore[operator]
    return time.perf_counter() - start, np.asarray(out, dtype=np.float32)


def run_embed_bench(quick: bool = False, texts: list[str] | None = None) -> dict[str, float | int | str]:
    """Texts/s of the MLX encoder and of sentence-transformers on the same texts and cores."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    from mdp.tokenizer import default_model_path

    n_texts, rounds = (64, 1) if quick else (256, 3)
    texts = list(texts) if texts is not None else default_texts(n_texts)
    encoder = SentenceEncoder()  # the kernels mdp uses by default (mdp_kernels on the CPU if built)
    runs = {"mlx": encoder.encode}
    if encoder.kernels.name != "mlx":
        runs["mlx_ops"] = SentenceEncoder(kernels="mlx").encode
    st = SentenceTransformer(str(default_model_path()), device="cpu")

    def st_encode(batch: list[str]) -> np.ndarray:
        return st.encode(batch, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)

    runs["st"] = st_encode
    warm = texts[: min(16, len(texts))]
    for run in runs.values():
        run(warm)

    times: dict[str, list[float]] = {name: [] for name in runs}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(rounds):
        for name, run in runs.items():
            seconds, vectors[name] = _timed(run, texts)
            times[name].append(seconds)

    def cosine_gap(name: str) -> float:
        cosine = (vectors[name] * vectors["st"]).sum(axis=1)
        return float(1.0 - cosine.min()) if len(cosine) else 0.0

    rate = {name: len(texts) / min(seconds) for name, seconds in times.items()}
    tokens = [len(ids) for ids in encoder.token_ids(texts)]
    mean_tokens = float(np.mean(tokens)) if tokens else 0.0
    flops_per_text = float(np.mean([encoder.flops_per_text(n) for n in tokens])) if tokens else 0.0
    gflops = measure_matmul_gflops()
    info = encoder.info()
    # Without the fused kernels (MLX ops only); the same run when mdp_kernels is not in use.
    plain = "mlx_ops" if "mlx_ops" in runs else "mlx"
    return {
        "mlx_texts_per_s": round(rate["mlx"], 2),
        "st_texts_per_s": round(rate["st"], 2),
        "ratio": round(rate["mlx"] / rate["st"], 3),
        "max_cosine_gap": cosine_gap("mlx"),
        "kernels": str(info["kernels"]),
        "kernels_isa": str(info["kernels_isa"]),
        "mlx_ops_texts_per_s": round(rate[plain], 2),
        "ratio_without_kernels": round(rate[plain] / rate["st"], 3),
        "kernel_speedup": round(rate["mlx"] / rate[plain], 3),
        "max_cosine_gap_without_kernels": cosine_gap(plain),
        "n_texts": len(texts),
        "rounds": rounds,
        "mean_tokens": round(mean_tokens, 1),
        "matmul_gflops": round(gflops, 1),
        "flops_per_text": round(flops_per_text),
        "roofline_texts_per_s": round(gflops * 1e9 / flops_per_text, 2) if flops_per_text else 0.0,
        "blas": str(info["blas"]),
        "dtype": str(info["dtype"]),
        "device": str(info["device"]),
    }


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    print(json.dumps(run_embed_bench(quick="--quick" in args), indent=2))


if __name__ == "__main__":
    main()
