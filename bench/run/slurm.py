"""The ``${spear_slurm_gpus:${device}}`` resolver of conf/hydra/launcher/slurm.yaml: one GPU per job
when ``device`` asks for CUDA, none otherwise (no --gpus line), so CPU-only partitions work.
Registered when ``bench`` is imported (bench/__init__.py); the launcher is hydra_plugins/spear_bench_launcher/slurm_launcher.py.
"""
from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf


def gpus_for_device(device: Any) -> int | None:
    """GPUs to request per job: 1 when the run is told to use CUDA, else None."""
    return 1 if str(device).lower().startswith("cuda") else None


if not OmegaConf.has_resolver("spear_slurm_gpus"):
    OmegaConf.register_new_resolver("spear_slurm_gpus", gpus_for_device)

__all__ = ["gpus_for_device"]
