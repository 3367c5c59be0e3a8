"""mdp: documents to a versioned, measured vector index, on MLX and Dagster."""

import os

__version__ = "0.1.0"

# Offline and private by default: no telemetry from the libraries we drive.
for _key, _value in {
    "DO_NOT_TRACK": "true",
    "SCARF_NO_ANALYTICS": "true",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DAGSTER_DISABLE_TELEMETRY": "true",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_key, _value)

# mlx-cpu binds its BLAS when mlx.core is first imported; load the optimised one before anyone does.
from mdp.blas import activate_openblas as _activate_openblas  # noqa: E402

_activate_openblas()
