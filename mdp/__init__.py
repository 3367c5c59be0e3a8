"""mdp: documents to a versioned, measured vector index, on MLX and Dagster.

Importing mdp has no side effects: entry points call :func:`mdp.runtime.configure_process` first.
"""

__version__ = "0.1.0"
