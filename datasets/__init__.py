"""spear-bench datasets: registry, loaders, deterministic batches and offline stand-ins.

Not HuggingFace ``datasets``: this package shadows it on purpose inside the project's venv.
"""
from datasets.registry import (  # noqa: F401
    REGISTRY,
    DatasetInfo,
    DatasetUnavailable,
    Source,
    load_source,
    select_batch,
)
