"""Progress bar, deadline and thread count of an attack's optimisation loop (shared by the
iterative attacks)."""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager

import torch


class LoopMonitor:
    """A tqdm bar shown only when stderr is a terminal, and the attack's deadline.

    ``tick(n, **postfix)`` advances the bar and returns True once the deadline (an absolute
    ``time.monotonic()`` value) has passed; ``timed_out`` remembers it.
    """

    def __init__(self, total: int, desc: str, *, enabled: bool = True, deadline: float | None = None):
        self.deadline = deadline
        self.timed_out = False
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="it", leave=False)

    def tick(self, n: int = 1, **postfix: str) -> bool:
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(**postfix)
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.timed_out = True
        return self.timed_out

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@contextmanager
def intra_op_threads(n: int | None):
    """Run the block with ``n`` intra-op threads (None: leave PyTorch's setting), then restore.

    The optimisation loops here run thousands of steps on small tensors; on a loaded 2-core machine
    two threads made them 6-17x slower than one (synchronisation, not arithmetic, dominates).
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"threads={n!r}: must be an integer >= 1, or None for PyTorch's setting")
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


__all__ = ["LoopMonitor", "intra_op_threads"]
