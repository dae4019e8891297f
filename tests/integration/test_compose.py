"""Every experiment overlay composes, with every profile, for every dataset it sweeps."""
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bench.runner import apply_profile

CONF = Path(__file__).resolve().parents[2] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def _compose(overrides, hydra_node=False):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=hydra_node)


def test_there_are_experiments():
    assert "table1" in EXPERIMENTS


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_with_each_profile(experiment):
    base = _compose([f"experiment={experiment}"], hydra_node=True)
    profiles = list(base.get("profiles") or {}) or [base.profile]
    params = OmegaConf.to_container(base.hydra.sweeper.params or {}, resolve=False)
    for profile in profiles:
        # sweep values may interpolate the profile (e.g. ${grid.${profile}.dataset})
        plain = _compose([f"experiment={experiment}", f"profile={profile}"])
        OmegaConf.set_struct(plain, False)
        resolved = OmegaConf.merge(plain, {"_sweep": {k: str(v) for k, v in params.items()}})
        sweep = {k: str(v).split(",") for k, v in resolved._sweep.items()}
        for choice in sweep.get("dataset", [None]):
            ov = [f"experiment={experiment}", f"profile={profile}"]
            if choice:
                ov.append(f"dataset={choice.strip()}")
            for attack in sweep.get("attack", [None])[:4]:
                cfg = _compose(ov + ([f"attack={attack.strip()}"] if attack else []))
                cfg = apply_profile(cfg, overrides=[])
                OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
                assert cfg.name and int(cfg.batch_size) >= 1 and int(cfg.n_batches) >= 1
                assert "_target_" in cfg.attack and "_target_" in cfg.model


def test_table1_profiles_match_the_paper_setting():
    quick = apply_profile(_compose(["experiment=table1", "profile=quick"]), overrides=[])
    paper = apply_profile(_compose(["experiment=table1", "profile=paper"]), overrides=[])
    assert quick.batch_size >= 10
    assert paper.batch_size == 20 and paper.n_batches == 100
    assert paper.model.depth == 6


def test_command_line_beats_profile():
    cfg = _compose(["experiment=table1", "profile=paper", "batch_size=7", "dataset=mnist"])
    out = apply_profile(cfg, overrides=["batch_size=7", "dataset=mnist"])
    assert out.batch_size == 7 and out.n_batches == 100 and out.dataset.name == "mnist"


def test_unknown_profile_is_a_clear_error():
    cfg = _compose(["experiment=table1", "profile=nope"])
    with pytest.raises(ValueError, match="profile='nope'.*quick"):
        apply_profile(cfg, overrides=[])


def test_table1_paper_spear_profile_is_spear_alone_in_both_precisions():
    base = _compose(["experiment=table1", "profile=paper_spear"], hydra_node=True)
    params = OmegaConf.to_container(base.hydra.sweeper.params, resolve=False)
    plain = _compose(["experiment=table1", "profile=paper_spear"])
    OmegaConf.set_struct(plain, False)
    resolved = OmegaConf.merge(plain, {"_sweep": {k: str(v) for k, v in params.items()}})
    assert resolved._sweep.attack == "spear"
    assert sorted(resolved._sweep.dtype.split(",")) == ["float32", "float64"]
    assert len(resolved._sweep.dataset.split(",")) == 5
    cfg = apply_profile(_compose(["experiment=table1", "profile=paper_spear", "dtype=float32"]),
                        overrides=["dtype=float32"])
    assert cfg.batch_size == 20 and cfg.n_batches == 100 and cfg.dtype == "float32"
    assert cfg.attack.search == "l1" and cfg.attack.threads == 1
