"""Where a row came from: code version, machine, library versions."""
from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


@lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip())
        return sha, dirty
    except (OSError, subprocess.SubprocessError):
        return None, None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={name} requested but CUDA is not available; use device=auto or cpu")
    return dev


@lru_cache(maxsize=1)
def machine() -> str:
    """The host that ran a row: its name, architecture and CPU count (``node01 (x86_64, 16 CPUs)``)."""
    return f"{platform.node() or 'unknown host'} ({platform.machine() or '?'}, {os.cpu_count()} CPUs)"


def provenance(device: torch.device) -> dict:
    sha, dirty = git_state()
    return {
        "git_sha": sha,
        "git_dirty": dirty,
        "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_version": torch.__version__,
    }
