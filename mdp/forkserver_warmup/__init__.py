"""Warm-ups for the parse workers' fork server (Linux).

multiprocessing's fork server takes its preload as module NAMES, so each warm-up is a module whose
import does it; :func:`mdp.isolation.WorkerPool` names the one it wants (``registry``, or
``senter`` / ``parser`` for the unstructured formats with that sentence splitter). What the fork
server does once, every worker forked from it inherits, shared copy-on-write: the parser registry
(scanning entry points takes ~0.35 s) and, for unstructured formats, spaCy's model and a primed PDF
parser. A failure here is not fatal: each worker checks its own setup and reports a broken one.
"""

from __future__ import annotations

import contextlib

MODULES = {
    "registry": "mdp.forkserver_warmup.registry",
    "senter": "mdp.forkserver_warmup.senter",
    "parser": "mdp.forkserver_warmup.parser",
}


def warm(kind: str) -> None:
    """``registry``: load the parser registry; ``senter``/``parser``: also unstructured's stack."""
    with contextlib.suppress(Exception):
        from mdp.parsers import get_parser

        pdf_parser = get_parser("pdf")
        if kind in ("senter", "parser"):
            from mdp.parsers.base import ensure_unstructured_ready

            ensure_unstructured_ready(kind)
            pdf_parser.warmup()  # type: ignore[attr-defined]
