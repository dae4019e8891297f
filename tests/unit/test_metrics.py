import math

import numpy as np
import pytest
import torch

from bench.scoring.matching import match
from bench.scoring.metrics import MetricConfig, grad_residual, image_quality, label_accuracy, psnr_from_mse


def test_psnr_values_and_cap():
    assert psnr_from_mse(torch.tensor([1e-2]), 300.0).item() == pytest.approx(20.0)
    assert psnr_from_mse(torch.tensor([0.0]), 300.0).item() == pytest.approx(300.0)
    assert psnr_from_mse(torch.tensor([0.0]), 150.0).item() == pytest.approx(150.0)


def test_exact_image_never_makes_mean_infinite():
    x = torch.rand(4, 3, 8, 8, dtype=torch.float64)
    q = image_quality(x.clone(), x, MetricConfig(psnr_cap_db=300.0))
    assert math.isfinite(q["psnr_mean"]) and q["psnr_mean"] == pytest.approx(300.0)
    assert q["psnr_cap_db"] == 300.0
    assert q["exact_fraction"] == 1.0


def test_permutation_invariance():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 8, 8, generator=g, dtype=torch.float64)
    noisy = (x + 0.01 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    perm = torch.randperm(6, generator=g)
    a = image_quality(noisy, x)
    b = image_quality(noisy[perm], x)
    assert a["psnr_per_image"] == pytest.approx(b["psnr_per_image"])
    assert [perm[i].item() for i in b["rec_for_true"]] == list(range(6))


def test_matching_finds_the_permutation_and_handles_fewer_reconstructions():
    x = torch.eye(5, dtype=torch.float64).reshape(5, 1, 1, 5)
    perm = torch.tensor([3, 0, 4, 1, 2])
    r, t = match(x[perm], x)
    assert (perm[r].numpy() == t).all()
    q = image_quality(x[:3], x)  # 2 true images without a reconstruction
    assert sum(v >= 0 for v in q["rec_for_true"]) == 3
    assert q["exact_fraction"] == pytest.approx(3 / 5)
    assert q["psnr_min"] == 0.0


def test_exact_threshold_applies_per_image():
    x = torch.zeros(2, 1, 4, 4, dtype=torch.float64)
    rec = x.clone()
    rec[1] += 1e-3  # MSE 1e-6 -> 60 dB
    q = image_quality(rec, x, MetricConfig(exact_psnr_db=80.0))
    assert q["exact_fraction"] == 0.5
    assert q["psnr_per_image"][1] == pytest.approx(60.0, abs=1e-6)


def test_label_accuracy_is_order_free_and_counts_repeats():
    true = torch.tensor([1, 1, 2, 3])
    assert label_accuracy(torch.tensor([3, 2, 1, 1]), true) == 1.0
    assert label_accuracy(torch.tensor([1, 2, 2, 3]), true) == 0.75
    assert label_accuracy(None, true) is None


def test_grad_residual():
    g = {"a": torch.ones(3), "b": torch.ones(2, 2)}
    assert grad_residual(g, g) == 0.0
    h = {"a": torch.zeros(3), "b": torch.ones(2, 2)}
    assert grad_residual(g, h) == pytest.approx(np.sqrt(3 / 7))


def test_grad_residual_chunked_matches_the_direct_formula():
    import math

    import torch

    from bench.scoring import metrics

    g = torch.Generator().manual_seed(0)
    obs = {"a": torch.randn(300, 7000, generator=g, dtype=torch.float64), "b": torch.randn(5, generator=g).double()}
    rec = {k: v + 1e-3 * torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in obs.items()}
    direct = math.sqrt(sum(float((obs[k] - rec[k]).pow(2).sum()) for k in obs) / sum(float(v.pow(2).sum()) for v in obs.values()))
    assert abs(metrics.grad_residual(obs, rec) - direct) < 1e-12 * direct


def test_batch_peak_memory_window_resets_between_batches():
    """Rows of a multirun must not inherit an earlier job's peak (process-wide ru_maxrss did)."""
    import pytest
    import torch

    from bench.run.memory import peak_mem_mb as _peak_mem_mb, reset_peak_mem as _reset_peak_mem

    big = torch.ones(100_000_000, dtype=torch.uint8)  # 100 MB touched
    before = _peak_mem_mb(torch.device("cpu"))
    del big
    _reset_peak_mem(torch.device("cpu"))
    after = _peak_mem_mb(torch.device("cpu"))
    if after >= before:
        pytest.skip("this kernel cannot reset the peak RSS (/proc/self/clear_refs)")
    assert before - after > 50
