"""Dagster resources: the configured project, the MLX encoder and the vector store.

Each resource is a thin ``ConfigurableResource`` over a plain-Python object from
``mdp``; the asset layer never touches MLX or LanceDB directly.
"""

from mdp_resources.core import MdpSettings, MLXEncoderResource, VectorStoreResource
from mdp_resources.partitions import SOURCES_PARTITIONS

__all__ = ["SOURCES_PARTITIONS", "MLXEncoderResource", "MdpSettings", "VectorStoreResource"]
