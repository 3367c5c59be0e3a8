"""Where a CPU forward pass of the encoder spends its time, op by op (docs/encoder.md's table).

One real batch of SciFact abstracts (about ``CPU_BATCH_TOKENS`` padded tokens, as the encoder
batches them) runs through every layer step by step, each step evaluated on its own and timed
best of ``repeats``, once with MLX ops and once with mdp_kernels' fused kernels (when built).
Run: ``python -m mdp.bench.encoder_profile [repeats]``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mdp.blas import activate_openblas

activate_openblas()  # before mlx.core is imported anywhere in this process

import mlx.core as mx  # noqa: E402

from mdp.bench.embed import default_texts  # noqa: E402
from mdp.encoder import CPU_BATCH_TOKENS, SentenceEncoder  # noqa: E402
from mdp.models.bert import Bert, attention_fast, gelu_rational  # noqa: E402


def _batch(encoder: SentenceEncoder) -> tuple[mx.array, mx.array]:
    ids = sorted(encoder.token_ids(default_texts(64)), key=len)
    length = len(ids[len(ids) // 2])
    rows = [seq for seq in ids if len(seq) <= length][-max(1, CPU_BATCH_TOKENS // length) :]
    input_ids = np.zeros((len(rows), length), np.int32)
    mask = np.zeros_like(input_ids)
    for i, seq in enumerate(rows):
        input_ids[i, : len(seq)], mask[i, : len(seq)] = seq, 1
    return mx.array(input_ids), mx.array(mask)


Steps = list[tuple[str, Callable[..., Any], tuple]]


def _steps_mlx_ops(model: Bert, ids: mx.array, mask: mx.array) -> Steps:
    """(op name, function, arguments) in forward order, as Bert.__call__ runs on the CPU;
    "x" stands for the layer input, "prev" for the previous step's output."""
    steps: Steps = [("embeddings + layer norm", model.embeddings, (ids,))]
    key_mask = mask[:, None, None, :].astype(mx.float32)
    for layer in model.layers:

        def attention_core(qkv: mx.array, layer: Any = layer) -> mx.array:
            b, n, _ = qkv.shape
            split = qkv.reshape(b, n, 3, layer.num_heads, layer.head_dim).transpose(2, 0, 3, 1, 4)
            context = attention_fast(split[0], split[1], split[2], key_mask)
            return context.transpose(0, 2, 1, 3).reshape(b, n, -1)

        steps += [
            ("QKV projection (matmul)", layer.qkv, ("x",)),
            ("attention core (scores, softmax, weighted sum, head split/merge)", attention_core, ("prev",)),
            ("attention output projection (matmul)", layer.attn_out, ("prev",)),
            ("residual add + layer norm", lambda a, b, n=layer.attn_norm: n(a + b), ("prev", "x")),
            ("FFN in (matmul)", layer.ffn_in, ("x",)),
            ("GELU", gelu_rational, ("prev",)),
            ("FFN out (matmul)", layer.ffn_out, ("prev",)),
            ("residual add + layer norm", lambda a, b, n=layer.ffn_norm: n(a + b), ("prev", "x")),
        ]
    return steps


def _steps_fused(model: Bert, ids: mx.array, mask: mx.array) -> Steps:
    kernels, eps = model.fused_kernels, model.config.layer_norm_eps
    emb = model.embeddings
    positions = emb.position_embeddings.weight + emb.token_type_embeddings.weight[0]
    steps: Steps = [
        (
            "embeddings + layer norm",
            lambda i: kernels.embed_layer_norm(
                i, emb.word_embeddings.weight, positions, emb.norm.weight, emb.norm.bias, eps
            ),
            (ids,),
        )
    ]
    for layer in model.layers:
        steps += [
            ("QKV projection (matmul)", lambda x, w=layer.qkv.weight: x @ w.T, ("x",)),
            (
                "attention core (scores, softmax, weighted sum, head split/merge)",
                lambda qkv, h=layer.num_heads, b=layer.qkv.bias: kernels.attention(qkv, mask, h, b),
                ("prev",),
            ),
            ("attention output projection (matmul)", lambda c, w=layer.attn_out.weight: c @ w.T, ("prev",)),
            (
                "residual add + layer norm",
                lambda a, x, n=layer.attn_norm, b=layer.attn_out.bias: kernels.add_layer_norm(
                    a, x, n.weight, n.bias, eps, b
                ),
                ("prev", "x"),
            ),
            ("FFN in (matmul)", lambda x, w=layer.ffn_in.weight: x @ w.T, ("x",)),
            ("GELU", lambda h, b=layer.ffn_in.bias: kernels.gelu(h, b), ("prev",)),
            ("FFN out (matmul)", lambda h, w=layer.ffn_out.weight: h @ w.T, ("prev",)),
            (
                "residual add + layer norm",
                lambda a, x, n=layer.ffn_norm, b=layer.ffn_out.bias: kernels.add_layer_norm(
                    a, x, n.weight, n.bias, eps, b
                ),
                ("prev", "x"),
            ),
        ]
    return steps


def _run(steps: Steps, repeats: int) -> dict[str, float]:
    """Seconds per op name (summed over layers); each step timed alone, best of ``repeats``."""
    totals: dict[str, float] = {}
    x = prev = None
    for name, fn, arg_spec in steps:
        args = [x if a == "x" else prev if a == "prev" else a for a in arg_spec]
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            out = fn(*args)
            mx.eval(out)
            best = min(best, time.perf_counter() - start)
        totals[name] = totals.get(name, 0.0) + best
        prev = out
        if name.startswith(("embeddings", "residual")):
            x = out
    return totals


def profile(repeats: int = 5) -> dict[str, Any]:
    """Per-op milliseconds and shares for the MLX-op and fused paths, plus whole forward passes."""
    plain = SentenceEncoder(kernels="mlx")
    ids, mask = _batch(plain)
    result: dict[str, Any] = {"batch": list(ids.shape), "tokens": int(mask.sum().item())}
    paths = {"mlx_ops": plain}
    fused = SentenceEncoder()
    if fused.kernels.name == "mdp_kernels":
        paths["mdp_kernels"] = fused
    for label, encoder in paths.items():
        model = encoder.model
        steps = _steps_fused(model, ids, mask) if model.fused_kernels else _steps_mlx_ops(model, ids, mask)
        ops = _run(steps, repeats)
        whole = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            mx.eval(model(ids, mask))
            whole = min(whole, time.perf_counter() - start)
        total = sum(ops.values())
        result[label] = {
            "forward_ms": round(whole * 1e3, 1),
            "ops_ms": {k: round(v * 1e3, 1) for k, v in ops.items()},
            "ops_share": {k: round(v / total, 3) for k, v in ops.items()},
        }
    return result


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    result = profile(int(args[0]) if args else 5)
    print(f"batch {result['batch']} ({result['tokens']} tokens)")
    labels = [k for k in ("mlx_ops", "mdp_kernels") if k in result]
    print("| op | " + " | ".join(f"{label} ms (share)" for label in labels) + " |")
    print("|---|" + "---|" * len(labels))
    for op in result["mlx_ops"]["ops_ms"]:
        cells = [f"{result[label]['ops_ms'][op]} ({result[label]['ops_share'][op]:.0%})" for label in labels]
        print(f"| {op} | " + " | ".join(cells) + " |")
    whole = " | ".join(str(result[k]["forward_ms"]) for k in labels)
    print(f"| whole forward pass, one eval | {whole} |")


if __name__ == "__main__":
    main()
