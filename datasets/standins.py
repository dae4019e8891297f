"""Offline stand-ins: crops of real photographs that installed packages ship (docs/reproducing.md: data).

Used where the real dataset cannot be had offline (CIFAR-10, TinyImageNet, ImageNet). Each crop
is a real picture at the dataset's resolution; a crop smaller than the target side is upsampled
and its id says ``upsampled``. Only ``retina`` and ``hubble`` reach 720×720 natively.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from datasets.registry import DatasetInfo, Source

PICTURES = (
    "astronaut", "coffee", "chelsea", "rocket", "stereo_motorcycle", "hubble",
    "immunohistochemistry", "retina", "china", "flower", "grace_hopper",
)


@lru_cache(maxsize=None)
def load_picture(name: str) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1]."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        arr = load_sample_image(f"{name}.jpg")
    elif name == "grace_hopper":
        import matplotlib.cbook as cbook
        from PIL import Image

        with cbook.get_sample_data("grace_hopper.jpg") as fh:
            arr = np.asarray(Image.open(fh).convert("RGB"))
    else:
        from skimage import data

        fn = {"hubble": "hubble_deep_field"}.get(name, name)
        arr = getattr(data, fn)()
        if isinstance(arr, tuple):  # stereo_motorcycle returns (left, right, disparity)
            arr = arr[0]
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return torch.from_numpy(arr[..., :3].copy()).permute(2, 0, 1).float() / 255.0


def _crop_plan(pictures, per_picture: int, side: int, seed: int):
    """Deterministic (picture, top, left, size) per sample; the crop is square."""
    rng = np.random.default_rng([seed, side, 0xC0])
    plan = []
    for p in pictures:
        _, H, W = load_picture(p).shape
        short = min(H, W)
        for k in range(per_picture):
            # Crops of 35-100 % of the short side: whole objects and textures, varied content.
            size = int(rng.uniform(0.35, 1.0) * short)
            if short >= side:
                size = max(size, side)  # never upsample a picture that reaches the target natively
            top = int(rng.integers(0, H - size + 1))
            left = int(rng.integers(0, W - size + 1))
            plan.append((p, top, left, size))
    return plan


def picture_source(info: DatasetInfo, pictures=PICTURES, per_picture: int = 16, seed: int = 0) -> Source:
    """A stand-in pool for ``info``: ``per_picture`` crops of each picture at its resolution."""
    C, H, W = info.shape
    side = H
    plan = _crop_plan(tuple(pictures), int(per_picture), side, int(seed))
    labels = np.asarray([pictures.index(p) % info.num_classes for p, *_ in plan])
    ids = []
    for j, (p, top, left, size) in enumerate(plan):
        tag = "(upsampled)" if size < side else ""
        ids.append(f"{p}#{j % per_picture}{tag}")

    def get(i: int) -> torch.Tensor:
        p, top, left, size = plan[i]
        img = load_picture(p)[:, top: top + size, left: left + size]
        img = F.interpolate(img[None], size=(H, W), mode="bilinear", antialias=size > H,
                            align_corners=False)[0].clamp(0, 1)
        if C == 1:
            img = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])[None]
        return img

    n_up = sum(1 for i in ids if "upsampled" in i)
    note = (f"stand-in: {len(plan)} crops of {len(pictures)} bundled photographs at {H}x{W}"
            + (f"; {n_up} upsampled" if n_up else ""))
    return Source(info, "stand-in:pictures", labels, ids, get, note)


__all__ = ["PICTURES", "load_picture", "picture_source"]
