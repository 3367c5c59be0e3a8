"""Partitioning shared by assets, checks, sensors and schedules.

One dynamic partition per configured source (not per document: Dagster's UI and
backfills slow down past tens of thousands of keys). Work inside a partition is
incremental, so a partition run costs what changed.
"""

from dagster import DynamicPartitionsDefinition

SOURCES_PARTITIONS = DynamicPartitionsDefinition(name="mdp_sources")
