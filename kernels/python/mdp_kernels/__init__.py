"""Fused CPU kernels for mdp's BERT encoder, as MLX primitives (C++, see ../../csrc).

Import through :mod:`mdp.kernels`, which checks the build and falls back to MLX ops when it is
missing or stale.
"""

import mlx.core  # noqa: F401  (loads libmlx and registers mlx.core.array before the extension)

from mdp_kernels._ext import (  # noqa: E402
    add_layer_norm,
    attention,
    built_for_mlx,
    embed_layer_norm,
    gelu,
    isa,
    threads,
)

__all__ = ["add_layer_norm", "attention", "built_for_mlx", "embed_layer_norm", "gelu", "isa", "threads"]
