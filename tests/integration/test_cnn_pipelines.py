"""CNN pipelines end to end through the runner: rows with feature_cosine and stage scores -> table."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from attacks.base import AttackNotApplicable
from attacks.cpa import CpaAttack
from attacks.pipelines import CpaFiGeiping, SpearFiGeiping
from bench.record.rows import read_rows
from bench.report.build import build, table_path
from bench.run.runner import Runner
from tests.helpers import observe, paper_fcnn, real_batch

CONF = Path(__file__).resolve().parents[2] / "conf"
TINY = {  # per-attack budgets small enough for the fast suite (the quick profile's are larger)
    "geiping": ["attack.max_iterations=20", "attack.restarts=1", "attack.threads=1"],
    "spear_fi_geiping": ["attack.fi.iterations=60", "attack.refine.max_iterations=20",
                         "attack.refine.restarts=1"],
    "cpa_fi_geiping": ["attack.stage1.iterations=300", "attack.fi.iterations=60",
                       "attack.refine.max_iterations=20", "attack.refine.restarts=1"],
}


def _cfg(attack: str, *extra: str, tiny: bool = True):
    small = ["dataset=cifar10", "batch_size=4", "n_batches=1", "save_images=0",  # 32x32: fast suite
             *TINY.get(attack, [])] if tiny else []
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config",
                       overrides=["experiment=cnn", "profile=quick", f"attack={attack}", *small, *extra])


def test_attack_configs_build_the_pipelines():
    for name, cls in (("spear_fi_geiping", SpearFiGeiping), ("cpa_fi_geiping", CpaFiGeiping),
                      ("cpa", CpaAttack)):
        atk = instantiate(_cfg(name).attack)
        assert isinstance(atk, cls)
    atk = instantiate(_cfg("cpa_fi_geiping").attack)
    assert atk.name == "cpa+fi+geiping" and atk.stage1.config.source == "embedding"
    assert atk.fi.lr == 0.1 and atk.fi.schedule == "cosine" and atk.refine.cfg.lr == 0.1


def test_profiles_pick_budgets_per_attack_and_swap_the_model():
    quick = _cfg("cpa_fi_geiping", tiny=False)
    assert quick.attack.stage1.iterations == 10000 and quick.attack.refine.max_iterations == 600
    assert quick.model.name == "small_cnn" and quick.dataset.name == "tiny_imagenet"
    paper = _cfg("spear_fi_geiping", "profile=paper", tiny=False)
    assert paper.model._target_ == "bench.run.models.vgg16" and "channels" not in paper.model
    assert paper.dataset.name == "imagenet224" and paper.attack.fi.iterations == 25000


def test_pipelines_refuse_a_first_layer_that_sees_pixels():
    spec, x01, y = real_batch("cifar10", 2)
    atk = instantiate(_cfg("spear_fi_geiping").attack)
    with pytest.raises(AttackNotApplicable, match="raw input"):
        atk.reconstruct(observe(paper_fcnn(spec), spec, x01, y), generator=__import__("torch").Generator())


def test_three_methods_through_the_runner_to_the_table(tmp_results):
    rows = {}
    for attack in ("geiping", "cpa_fi_geiping", "spear_fi_geiping"):
        path = Runner(_cfg(attack)).run()
        (row,) = read_rows([path])
        rows[row["attack"]] = row
        assert path.is_relative_to(tmp_results)
    for name, row in rows.items():
        assert row["status"] in ("ok", "partial"), (name, row["error_msg"])
        assert row["model"] == "small_cnn" and row["model_state"] == "untrained"
        assert row["psnr_mean"] > 5 and row["time_attack_s"] > 0
    assert rows["geiping"]["feature_cosine"] is None
    spear, cpa = rows["spear+fi+geiping"], rows["cpa+fi+geiping"]
    assert spear["feature_cosine"] >= 0.99           # SPEAR's features are exact
    assert 0.0 < cpa["feature_cosine"] < spear["feature_cosine"]
    for row in (spear, cpa):
        assert row["stage_fi_psnr"] > 5 and row["stage_refine_psnr"] == pytest.approx(row["psnr_mean"])
        for key in ("diag_time_stage1_s", "diag_time_fi_s", "diag_time_refine_s", "diag_fi_feature_cos_mean"):
            assert row[key] is not None and row[key] >= 0, key
        assert row["diag_attacked_layer"] == "classifier.0" and row["diag_fi_iterations"] == 60
    md = table_path(tmp_results, build(tmp_results, "cnn", "quick")).read_text()
    for name in ("geiping", "cpa+fi+geiping", "spear+fi+geiping"):
        assert f"| {name} | CIFAR-10 | small_cnn |" in md
    assert "feature sim" in md and "0.984" in md and "0.562" in md
