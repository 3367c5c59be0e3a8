"""Asset checks: the data-quality layer. Checks that guard the index are blocking."""

import warnings

import dagster as dg

# Partitioned asset checks are "preview" in Dagster 1.13; we rely on them knowingly.
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from mdp_checks.checks import ALL_CHECKS  # noqa: E402

__all__ = ["ALL_CHECKS"]
