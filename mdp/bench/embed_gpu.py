"""Embedding throughput on a GPU: MLX (CUDA or Metal) against sentence-transformers on the same GPU.

One process, the same SciFact abstracts, the real all-MiniLM-L6-v2 weights. Compared:

* MLX float32 against sentence-transformers float32 (its default precision);
* MLX bfloat16 against sentence-transformers with the model cast to bfloat16 and to float16 (the
  faster of the two is the baseline).

Each contender runs once over all texts to warm up (every padded shape compiled, kernels chosen),
then the timed rounds alternate between contenders; the best round counts. "texts/s" is end to
end (texts in, normalised float32 vectors on the host out, tokenizing included, with the
tokenizer's own thread pool allowed for sentence-transformers); "model" figures start from token
ids, to show the device alone. With ``scifact=True`` (and ``MDP_BENCH_SCIFACT`` not "0") it then
runs ``mdp eval --beir`` on SciFact in a fresh process with ``[model] device = "gpu"``, in fp32
(``scifact_build_s``) and bf16 (``scifact_build_s_bf16``), and records wall time, stages and nDCG@10.

Run: ``mdp bench --only embed`` on a machine whose MLX has a GPU (or ``python -m mdp.bench.embed_gpu``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mdp.bench import shared_data_dir
from mdp.encoder import SentenceEncoder, gpu_available, gpu_name

MLX_CACHE_LIMIT = 8 << 30  # MLX keeps freed GPU buffers; bounded so that torch has room beside it
ST_BATCH_SIZES = (128, 512)
# Dense bf16 matrix rate of the GPU when it cannot be measured (an H200 measured 769-798 TFLOP/s)
FALLBACK_BF16_TFLOPS = 790.0


def scifact_dir() -> Path:
    return Path(os.environ.get("MDP_SCIFACT_DIR") or shared_data_dir() / "scifact")


def scifact_texts(limit: int | None = None) -> list[str]:
    texts = []
    with (scifact_dir() / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                record = json.loads(line)
                texts.append(f"{record.get('title', '')} {record.get('text', '')}".strip())
            if limit and len(texts) >= limit:
                break
    return texts


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


def _best_time(fn: Callable[[], Any], rounds: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def _measure_bf16_tflops() -> float:
    """Dense bf16 matrix rate through torch (cuBLAS): the roofline's ceiling, measured here."""
    import torch

    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    reps = 20
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2.0 * n**3 * reps / (time.perf_counter() - start) / 1e12


def _st_model_only(st: Any, ids: list[list[int]], batch_size: int, device: str) -> np.ndarray:
    """sentence-transformers' module stack on token ids (length-sorted batches), vectors to host."""
    import torch

    order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = [ids[i] for i in order[start : start + batch_size]]
            width = len(rows[0])
            tokens = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, seq in enumerate(rows):
                tokens[r, : len(seq)] = seq
                mask[r, : len(seq)] = 1
            features = {
                "input_ids": torch.from_numpy(tokens).to(device, non_blocking=True),
                "attention_mask": torch.from_numpy(mask).to(device, non_blocking=True),
                "token_type_ids": torch.zeros_like(torch.from_numpy(tokens)).to(device, non_blocking=True),
            }
            vectors = st(features)["sentence_embedding"].float()
            outputs.append(torch.nn.functional.normalize(vectors, dim=-1))
        stacked = torch.cat(outputs).cpu().numpy()
    out = np.empty_like(stacked)
    out[order] = stacked
    return out


def run_embed_gpu_bench(quick: bool = False, scifact: bool = True, device: str = "gpu") -> dict[str, Any]:
    """MLX vs sentence-transformers on one GPU, fp32 and bf16; then, optionally, SciFact end to end.
    ``device="cpu"`` runs the same code on the CPU (a dry run of the script; its numbers mean nothing)."""
    if device == "gpu" and not gpu_available():
        raise RuntimeError("MLX has no GPU backend here; the GPU embed bench needs one (make setup-cuda)")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"  # sentence-transformers' tokenizer may use every core
    import mlx.core as mx
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    from mdp.tokenizer import default_model_path

    mx.set_cache_limit(MLX_CACHE_LIMIT)
    rounds = int(os.environ.get("MDP_BENCH_ROUNDS", 0)) or (2 if quick else 3)
    texts = scifact_texts(int(os.environ.get("MDP_BENCH_TEXTS", 0)) or (1024 if quick else None))
    model_dir = str(default_model_path())
    log = lambda msg: print(f"embed_gpu: {msg}", file=sys.stderr, flush=True)  # noqa: E731

    torch_device = "cuda" if device == "gpu" else "cpu"
    mlx32 = SentenceEncoder(device=device, dtype="float32", compiled=True)
    mlx16 = SentenceEncoder(device=device, dtype="bfloat16", compiled=True)
    st32 = SentenceTransformer(model_dir, device=torch_device)
    st_half = {
        "bf16": SentenceTransformer(model_dir, device=torch_device).to(torch.bfloat16),
        "fp16": SentenceTransformer(model_dir, device=torch_device).to(torch.float16),
    }
    ids = mlx32.token_ids(texts)
    tokens = [len(seq) for seq in ids]

    def st_encode(model: Any, batch_size: int) -> Callable[[], np.ndarray]:
        return lambda: np.asarray(
            model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True),
            dtype=np.float32,
        )

    def settle() -> None:  # freed MLX buffers back to the device, so torch has room
        mx.clear_cache()
        if torch_device == "cuda":
            torch.cuda.empty_cache()

    contenders: dict[str, Callable[[], np.ndarray]] = {
        "mlx_fp32": lambda: mlx32.encode(texts),
        "mlx_bf16": lambda: mlx16.encode(texts),
        "mlx_fp32_model": lambda: mlx32._encode_ids(ids, mlx32.model),
        "mlx_bf16_model": lambda: mlx16._encode_ids(ids, mlx16.model),
    }
    for batch_size in ST_BATCH_SIZES:
        contenders[f"st_fp32_b{batch_size}"] = st_encode(st32, batch_size)
        contenders[f"st_fp32_model_b{batch_size}"] = lambda b=batch_size: _st_model_only(
            st32, ids, b, torch_device
        )
        for name, model in st_half.items():
            contenders[f"st_{name}_b{batch_size}"] = st_encode(model, batch_size)
            contenders[f"st_{name}_model_b{batch_size}"] = lambda m=model, b=batch_size: _st_model_only(
                m, ids, b, torch_device
            )

    vectors: dict[str, np.ndarray] = {}
    warm_s: dict[str, float] = {}
    for name, fn in contenders.items():  # warm-up: every shape once
        start = time.perf_counter()
        vectors[name] = fn()
        warm_s[name] = round(time.perf_counter() - start, 3)
        settle()
    log(f"warm-up seconds {warm_s}")
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(rounds):
        for name, fn in contenders.items():
            seconds, _ = _best_time(fn, 1)
            best[name] = min(best[name], seconds)
            settle()
    rate = {name: len(texts) / seconds for name, seconds in best.items()}
    log(f"texts/s { ({k: round(v) for k, v in rate.items()}) }")

    def best_st(prefix: str) -> tuple[str, float]:
        name = max((k for k in rate if k.startswith(prefix)), key=lambda k: rate[k])
        return name, rate[name]

    st32_name, st32_rate = best_st("st_fp32_b")
    st32_model_name, st32_model_rate = best_st("st_fp32_model_b")
    half = [best_st(f"st_{kind}_b") for kind in st_half]
    half_model = [best_st(f"st_{kind}_model_b") for kind in st_half]
    st16_name, st16_rate = max(half, key=lambda item: item[1])
    st16_model_name, st16_model_rate = max(half_model, key=lambda item: item[1])

    reference = vectors[st32_name]
    gap_fp32 = float(1.0 - _cosines(vectors["mlx_fp32"], reference).min())
    gap_bf16 = float(1.0 - _cosines(vectors["mlx_bf16"], reference).min())
    bf16_vs_own_fp32 = float(_cosines(vectors["mlx_bf16"], vectors["mlx_fp32"]).min())
    st_half_gap = float(1.0 - _cosines(vectors[st16_name], reference).min())

    flops_per_text = float(np.mean([mlx32.flops_per_text(n) for n in tokens]))
    try:
        tflops = _measure_bf16_tflops() if torch_device == "cuda" else FALLBACK_BF16_TFLOPS
    except Exception:  # a failed measurement must not lose the rest
        tflops = FALLBACK_BF16_TFLOPS
    roofline = tflops * 1e12 / flops_per_text
    info16 = mlx16.info()
    result: dict[str, Any] = {
        "device": gpu_name() or (torch.cuda.get_device_name() if torch_device == "cuda" else "cpu"),
        "mlx_device": str(mx.default_device()),
        "mlx_version": mx.__version__,
        "torch_version": torch.__version__,
        "sentence_transformers_version": sentence_transformers.__version__,
        "n_texts": len(texts),
        "mean_tokens": round(float(np.mean(tokens)), 1),
        "rounds": rounds,
        "batch_tokens": mlx32.device_batch_tokens,
        "pad_multiple": mlx32.profile.pad_multiple,
        "mlx_fp32_texts_per_s": round(rate["mlx_fp32"], 1),
        "st_fp32_texts_per_s": round(st32_rate, 1),
        "st_fp32_best": st32_name,
        "ratio_fp32": round(rate["mlx_fp32"] / st32_rate, 3),
        "mlx_bf16_texts_per_s": round(rate["mlx_bf16"], 1),
        "st_bf16_texts_per_s": round(max(r for n, r in half if "bf16" in n), 1),
        "st_fp16_texts_per_s": round(max(r for n, r in half if "fp16" in n), 1),
        "st_half_best": st16_name,
        "ratio_bf16": round(rate["mlx_bf16"] / st16_rate, 3),
        "model_mlx_fp32_texts_per_s": round(rate["mlx_fp32_model"], 1),
        "model_st_fp32_texts_per_s": round(st32_model_rate, 1),
        "model_ratio_fp32": round(rate["mlx_fp32_model"] / st32_model_rate, 3),
        "model_mlx_bf16_texts_per_s": round(rate["mlx_bf16_model"], 1),
        "model_st_half_texts_per_s": round(st16_model_rate, 1),
        "model_st_half_best": st16_model_name,
        "model_ratio_bf16": round(rate["mlx_bf16_model"] / st16_model_rate, 3),
        "max_cosine_gap": max(gap_fp32, gap_bf16),
        "max_cosine_gap_fp32": gap_fp32,
        "max_cosine_gap_bf16": gap_bf16,
        "min_cosine_bf16_vs_mlx_fp32": bf16_vs_own_fp32,
        "max_cosine_gap_st_half": st_half_gap,
        "bf16_parity_check_min_cosine": info16.get("parity_min_cosine", 1.0),
        "mlx_bf16_dtype_used": info16["dtype"],
        "flops_per_text": round(flops_per_text),
        "bf16_tflops_measured": round(tflops, 1),
        "roofline_texts_per_s": round(roofline),
        "roofline_fraction_mlx_bf16": round(rate["mlx_bf16"] / roofline, 4),
        "roofline_fraction_st_half": round(st16_rate / roofline, 4),
        "roofline_fraction_mlx_bf16_model": round(rate["mlx_bf16_model"] / roofline, 4),
        "texts_per_s_all": {k: round(v, 1) for k, v in rate.items()},
        "warmup_s": warm_s,
    }
    contenders.clear()
    settle()
    scifact = scifact and os.environ.get("MDP_BENCH_SCIFACT", "1") != "0"
    if scifact and (scifact_dir() / "queries.jsonl").exists():
        for dtype in ("float32", "bfloat16"):  # float32 is [model] dtype's default
            run = run_scifact_build(dtype, device)
            suffix = "" if dtype == "float32" else "_bf16"
            result[f"scifact_build_s{suffix}"] = run["wall_s"]
            result[f"scifact{suffix}"] = run
            log(f"scifact {dtype}: {run['wall_s']} s, nDCG@10 {run['ndcg@10']}")
    return result


def run_scifact_build(dtype: str, device: str = "gpu") -> dict[str, Any]:
    """``mdp eval --beir`` on SciFact in a fresh process and an empty store: wall time, stages, nDCG@10."""
    with tempfile.TemporaryDirectory(prefix="mdp-scifact-") as tmp:
        config = Path(tmp) / "mdp.toml"
        config.write_text(f'[model]\ndevice = "{device}"\ndtype = "{dtype}"\n')
        command = [
            sys.executable, "-m", "mdp_cli", "eval", "--beir", str(scifact_dir()),
            "--store", str(Path(tmp) / "store"), "--config", str(config), "--json",
        ]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"mdp eval --beir failed ({done.returncode}): {done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    return {
        "dtype": dtype,
        "wall_s": round(wall, 2),
        "seconds": report.get("seconds", {}),
        "stages": report.get("ingest", {}).get("stages", {}),
        "chunks": report.get("ingest", {}).get("chunks"),
        "encoder": report.get("encoder", {}),
        "ndcg@10": {s: round(v["ndcg@10"], 4) for s, v in report["strategies"].items()},
    }


def main(argv: list[str] | None = None) -> None:
    """``[--quick] [--no-scifact]``, or ``--scifact-only DTYPE`` for one SciFact build."""
    args = sys.argv[1:] if argv is None else argv
    device = "cpu" if "--cpu" in args else "gpu"  # --cpu: a dry run of this script without a GPU
    if "--scifact-only" in args:
        result = run_scifact_build(args[args.index("--scifact-only") + 1], device)
    else:
        quick, scifact = "--quick" in args, "--no-scifact" not in args
        result = run_embed_gpu_bench(quick=quick, scifact=scifact, device=device)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
