"""What a dataset is and what a loader returns: :class:`DatasetInfo`, :class:`Source`, and the
error for missing files. Shared by the registry (datasets/registry.py) and the loaders it calls
(datasets/standins.py, datasets/adult.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from attacks.base import DataSpec


class DatasetUnavailable(FileNotFoundError):
    """The dataset's files are missing and no stand-in is allowed; the message says how to get them."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    how_to_get: str  # printed when the files are missing

    def spec(self) -> DataSpec:
        return DataSpec(self.shape, self.mean, self.std, self.num_classes, "image")


@dataclass
class Source:
    """A pool of samples: ``get(i)`` -> (C,H,W) float tensor in [0,1]; ``labels[i]``; ``ids[i]``."""

    info: DatasetInfo
    data_source: str  # "real" or "stand-in:<name>"
    labels: np.ndarray
    ids: list[str]
    get: Callable[[int], torch.Tensor]
    note: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        x = torch.stack([self.get(int(i)) for i in indices])
        y = torch.as_tensor(self.labels[list(indices)], dtype=torch.long)
        return x, y, [self.ids[int(i)] for i in indices]


__all__ = ["DatasetInfo", "DatasetUnavailable", "Source"]
