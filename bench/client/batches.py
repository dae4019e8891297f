"""Which samples a client's update covers: one selection for the run and for its resume check.

:func:`select_update_batch` draws the sample indices behind one observed update from
``(seed, batch_index)``: ``clients × B`` of them when the defense sums several clients' updates
(secure aggregation), all of one class for label-homogeneous batches, else a class-balanced batch
(:func:`datasets.select_batch`). The runner uses it both to attack a batch and to fingerprint it
when deciding whether a row is still current, so the two can never disagree.

The SPEAR paper (Dimitrov et al., arXiv 2403.03945) tests batches whose samples all share a label:
the case where label-counting attacks learn least and the samples' gradients at the last layer are
most alike. :func:`homogeneous_batch` draws the class and the samples from ``(seed, batch_index)``.
"""
from __future__ import annotations

import numpy as np

from bench.client import samples_per_update
from datasets import select_batch


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


def select_update_batch(labels, defense, batch_size: int, *, seed: int, batch_index: int,
                        balanced: bool = True, homogeneous: bool = False) -> list[int]:
    """Indices of the samples behind batch ``batch_index``'s update under ``defense``."""
    n = samples_per_update(defense, int(batch_size))
    if homogeneous:
        return homogeneous_batch(labels, n, seed=int(seed), batch_index=batch_index)
    return select_batch(labels, n, seed=int(seed), batch_index=batch_index, balanced=bool(balanced))


__all__ = ["homogeneous_batch", "select_update_batch"]
