"""Peak memory of one batch (CUDA's counter, or Linux's peak RSS since a reset)."""
from __future__ import annotations

import resource

import torch


def reset_peak_mem(device: torch.device) -> None:
    """Start a batch's peak-memory window: CUDA's counter, or Linux's peak RSS (VmHWM), which
    ``5 > /proc/self/clear_refs`` resets (Linux >= 4.0). Without it the process-wide maximum
    would carry one job's peak into every later job of a multirun."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_mem_mb(device: torch.device) -> float:
    """Peak memory of the batch: CUDA's allocated peak, else the peak RSS since the last reset."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # process peak RSS
