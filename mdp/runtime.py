"""Process start-up: offline and private settings, and MLX's BLAS, set once where a process starts.

:func:`configure_process` is called by every entry point: the ``mdp`` command, the Dagster
definitions module (``dagster dev``, code servers, run workers), the parse worker pool before it
starts its fork server, and the test suite's conftest. Child processes inherit the environment, so
parse workers and the fork server never import a library with its telemetry on. Importing ``mdp``
itself changes nothing.

Settings the user exported already win (``os.environ.setdefault``). Dagster's own telemetry has no
environment switch: it is off through ``telemetry: enabled: false`` in the instance's
``dagster.yaml`` (``make setup`` copies the repository's into ``.dagster_home``).
"""

from __future__ import annotations

import os

from mdp.blas import BlasInfo, activate_openblas

# What each setting turns off, for the libraries mdp imports.
PRIVACY_ENV: dict[str, str] = {
    # onnxruntime (imported by unstructured's PDF code): its 1DS uploader looks up
    # mobile.events.data.microsoft.com and writes a device id under ~/.cache/Microsoft
    "ORT_DISABLE_TELEMETRY": "1",
    # unstructured's Scarf ping, and every tool that honours the Console Do Not Track convention
    "DO_NOT_TRACK": "true",
    "SCARF_NO_ANALYTICS": "true",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
    # huggingface_hub / transformers (sentence-transformers in the test suite): no hub requests
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRANSFORMERS_OFFLINE": "1",
    # tokenizers' own thread pool would fight the parse workers for the cores
    "TOKENIZERS_PARALLELISM": "false",
}

_configured = False


def configure_process(*, blas: bool = True) -> BlasInfo | None:
    """Set the privacy environment and (with ``blas``) bind MLX to an optimised BLAS; idempotent.

    Must run before ``unstructured``, ``onnxruntime`` or ``mlx.core`` are imported in this process.
    Parse workers pass ``blas=False``: they never load MLX.
    """
    global _configured
    if not _configured:
        for key, value in PRIVACY_ENV.items():
            os.environ.setdefault(key, value)
        _configured = True
    return activate_openblas() if blas else None
