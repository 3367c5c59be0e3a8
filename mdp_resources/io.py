"""The IO manager between mdp's assets: small typed records as JSON files, nothing pickled.

Assets hand each other references (``StageRef``: the payload sits in the store's staging table)
and small results (``EvalResult``); each is a pydantic model written as one JSON file under
``$DAGSTER_HOME/storage/<asset>/<partition>.json`` and read back as the type the consuming asset
or check annotates.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import BaseModel, Field


class JsonRecordIOManager(dg.ConfigurableIOManager):
    """Stores pydantic records as JSON; refuses anything else (large payloads belong in the store)."""

    base_dir: str = Field(default="", description="Folder for the records; empty: $DAGSTER_HOME/storage")

    def _path(self, context: dg.InputContext | dg.OutputContext) -> Path:
        base = Path(self.base_dir) if self.base_dir else _instance_storage(context)
        key = context.asset_key.path if context.has_asset_key else [context.step_key or "op", context.name]
        partition = context.asset_partition_key if context.has_asset_partitions else "__all__"
        return base.joinpath(*key, f"{partition}.json")

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        if not isinstance(obj, BaseModel):
            name = context.asset_key.to_user_string() if context.has_asset_key else context.name
            raise TypeError(
                f"{name}: mdp's IO manager stores small pydantic records, not {type(obj).__name__}; "
                "stage large outputs in the store and return a reference (mdp/stages/staging.py)"
            )
        path = self._path(context)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(obj.model_dump_json())
        tmp.replace(path)  # a reader never sees half a record

    def load_input(self, context: dg.InputContext) -> Any:
        path = self._path(context)  # an input's asset key and partition are its upstream's
        kind = context.dagster_type.typing_type
        if not (isinstance(kind, type) and issubclass(kind, BaseModel)):
            raise TypeError(f"{context.name}: annotate the input with the record type it expects")
        try:
            return kind.model_validate_json(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path}: no stored output for this input; materialize its upstream asset first"
            ) from None


def _instance_storage(context: dg.InputContext | dg.OutputContext) -> Path:
    """The Dagster instance's storage folder (where its own IO manager would write)."""
    try:
        instance = context.instance if isinstance(context, dg.InputContext) else context.step_context.instance
        return Path(instance.storage_directory())
    except Exception:  # a context built without an instance (unit tests): DAGSTER_HOME
        home = os.environ.get("DAGSTER_HOME")
        if not home:
            raise RuntimeError("no Dagster instance and no DAGSTER_HOME: nowhere to keep records") from None
        return Path(home) / "storage"
