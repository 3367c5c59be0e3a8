"""Where the MLX encoder's time goes on a GPU: host-side batching, the model on fixed shapes
(compiled per layer, uncompiled, whole forward compiled), batch budgets, and torch for reference.

Run on the GPU machine (see scripts/gpu/run.sh, step `profile`); prints a table and writes
$OUT/profile.json. It also prints `best_batch_tokens=N`, the budget with the highest bf16 rate.
"""

from __future__ import annotations

import json
import os
import sys
import time
from functools import partial

import mlx.core as mx
import numpy as np

import mdp.encoder as encoder_module
from mdp.bench.embed_gpu import scifact_texts
from mdp.encoder import SentenceEncoder
from mdp.models.bert import _compiled_embed, _compiled_layer, padding_bias

OUT = os.environ.get("OUT", ".")
results: dict[str, float] = {}


def record(name: str, texts: int, seconds: float) -> None:
    results[name] = round(texts / seconds, 1)
    print(f"{name:55s} {texts / seconds:10.0f} texts/s", flush=True)


def timed(fn, reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


texts = scifact_texts()
enc32 = SentenceEncoder(device="gpu", dtype="float32")
enc16 = SentenceEncoder(device="gpu", dtype="bfloat16")
ids = enc32.token_ids(texts)

# 1. host side only: mlx.data batching and row padding (first stream of the process)
start = time.perf_counter()
batches = [enc32._rows(batch) for batch in enc32._batch_stream(ids)]
record("host: mlx.data batches + rows (no GPU)", len(ids), time.perf_counter() - start)
start = time.perf_counter()
arrays = [(mx.array(a), mx.array(m)) for a, m, _ in batches]
mx.eval(arrays)
record("host: mx.array of every batch", len(ids), time.perf_counter() - start)

# 2. the model on fixed shapes, inputs already on the device
rows_ids = [seq[:256] + [0] * (256 - len(seq[:256])) for seq in ids[:2048]]
rows_mask = [[1] * min(len(seq), 256) + [0] * (256 - min(len(seq), 256)) for seq in ids[:2048]]
for dtype, enc in (("fp32", enc32), ("bf16", enc16)):
    model = enc.model
    for batch in (128, 256, 512):
        groups = [
            (
                mx.array(np.array(rows_ids[i : i + batch], np.int32)),
                mx.array(np.array(rows_mask[i : i + batch], np.int32)),
            )
            for i in range(0, 2048, batch)
        ]
        mx.eval(groups)

        def run_compiled(groups=groups, enc=enc, model=model) -> None:
            outs = [enc._embed_batch(model, a, m) for a, m in groups]
            mx.eval(outs)

        record(f"model {dtype} B={batch} L=256 compiled per layer", 2048, timed(run_compiled, 3))
        if batch != 256:
            continue
        config = model.config
        layer = partial(_compiled_layer, num_heads=config.num_attention_heads, eps=config.layer_norm_eps)
        embed = partial(_compiled_embed, eps=model.config.layer_norm_eps)

        def forward(ids_, mask_, model=model, layer=layer, embed=embed):
            x = embed(model.embeddings.parameters(), ids_)
            bias = padding_bias(mask_, x.dtype)
            for block in model.layers:
                x = layer(block.parameters(), x, bias)
            hidden = x.astype(mx.float32)
            weights = mask_[..., None].astype(mx.float32)
            pooled = (hidden * weights).sum(axis=1) / weights.sum(axis=1)
            return pooled / mx.sqrt((pooled * pooled).sum(axis=-1, keepdims=True))

        whole = mx.compile(forward)

        def run_plain(groups=groups, forward=forward) -> None:
            mx.eval([forward(a, m) for a, m in groups])

        def run_whole(groups=groups, whole=whole) -> None:
            mx.eval([whole(a, m) for a, m in groups])

        record(f"model {dtype} B={batch} L=256 not compiled", 2048, timed(run_plain, 3))
        record(f"model {dtype} B={batch} L=256 whole forward compiled", 2048, timed(run_whole, 3))
        mx.clear_cache()

# 3. the encoder's own path on token ids (mlx.data, padding, async), by batch budget
best_tokens, best_rate = encoder_module.GPU_BATCH_TOKENS, 0.0
for budget in (32768, 65536, 131072, 262144):
    for dtype, enc in (("fp32", enc32), ("bf16", enc16)):
        enc.device_batch_tokens = budget
        seconds = timed(lambda enc=enc: enc._encode_ids(ids, enc.model), 2)
        record(f"encoder {dtype} token ids, batch_tokens={budget}", len(ids), seconds)
        if dtype == "bf16" and len(ids) / seconds > best_rate:
            best_tokens, best_rate = budget, len(ids) / seconds
        mx.clear_cache()
for inflight in (1, 8):
    encoder_module.IN_FLIGHT_BATCHES = inflight
    enc16.device_batch_tokens = best_tokens
    seconds = timed(lambda: enc16._encode_ids(ids, enc16.model), 2)
    record(f"encoder bf16 token ids, in flight {inflight}", len(ids), seconds)
encoder_module.IN_FLIGHT_BATCHES = 2
record("encoder bf16 texts (tokenizing included)", len(texts), timed(lambda: enc16.encode(texts), 2))
start = time.perf_counter()
enc16.token_ids(texts)
record("tokenize only", len(texts), time.perf_counter() - start)

# 4. torch for reference, same fixed shapes
try:
    import torch
    from sentence_transformers import SentenceTransformer

    from mdp.tokenizer import default_model_path

    st = SentenceTransformer(str(default_model_path()), device="cuda").to(torch.bfloat16)
    tid = torch.tensor(np.array(rows_ids, np.int64), device="cuda")
    tmask = torch.tensor(np.array(rows_mask, np.int64), device="cuda")

    def run_torch() -> None:
        with torch.inference_mode():
            for i in range(0, 2048, 256):
                f = {
                    "input_ids": tid[i : i + 256],
                    "attention_mask": tmask[i : i + 256],
                    "token_type_ids": torch.zeros_like(tid[i : i + 256]),
                }
                st(f)["sentence_embedding"]
        torch.cuda.synchronize()

    record("torch bf16 B=256 L=256 (sentence-transformers modules)", 2048, timed(run_torch, 3))
except Exception as exc:  # reference only
    print("torch reference failed:", exc)

print(f"best_batch_tokens={best_tokens}")
results["best_batch_tokens"] = best_tokens
with open(os.path.join(OUT, "profile.json"), "w") as fh:
    json.dump(results, fh, indent=2)
sys.stdout.flush()
