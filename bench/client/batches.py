"""Which samples a client holds: label-homogeneous batches (every sample of one class).

The SPEAR paper (arXiv 2403.03945) tests batches whose samples all share a label: the case
where label-counting attacks learn least and the samples' gradients at the last layer are most
alike. ``homogeneous_batch`` draws the class and the samples from ``(seed, batch_index)``.
"""
from __future__ import annotations

import numpy as np


def homogeneous_batch(labels, batch_size: int, *, seed: int, batch_index: int) -> list[int]:
    """``batch_size`` distinct samples of one class, chosen deterministically."""
    rng = np.random.default_rng([int(seed), int(batch_index), 0x1AB1])
    labels = np.asarray(labels)
    classes = [c for c in np.unique(labels) if (labels == c).sum() >= batch_size]
    if not classes:
        raise ValueError(f"no class has {batch_size} samples for a label-homogeneous batch")
    c = classes[int(rng.integers(len(classes)))]
    pool = np.flatnonzero(labels == c)
    return sorted(int(i) for i in rng.choice(pool, size=batch_size, replace=False))


__all__ = ["homogeneous_batch"]
