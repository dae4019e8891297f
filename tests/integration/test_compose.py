"""Profiles are hydra config: every experiment composes under every profile it defines, what
``--cfg job`` prints is the config that runs, and the command line beats the profile."""
from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import bench.run.runner
from bench.run.config_check import ConfigError
from bench.record.rows import config_hash, read_rows
from bench.run.runner import Runner, check_profile, run_paths, semantic_config

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
PAIRS = [(e, p.stem) for e in EXPERIMENTS for p in sorted((CONF / "budget" / e).glob("*.yaml"))]


def _compose(overrides, hydra_node=False):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra_node)


def _sweep(experiment, profile) -> dict[str, list[str]]:
    base = _compose([f"experiment={experiment}", f"profile={profile}"], hydra_node=True)
    params = OmegaConf.to_container(base.hydra.sweeper.params or {}, resolve=True)
    return {k: [v.strip() for v in str(p).split(",")] for k, p in params.items()}


def test_every_experiment_defines_quick_and_paper():
    assert "table1" in EXPERIMENTS
    for e in EXPERIMENTS:
        assert {"quick", "paper"} <= {p for x, p in PAIRS if x == e}, e


@pytest.mark.parametrize("experiment,profile", PAIRS)
def test_experiment_composes_under_its_profile(experiment, profile):
    sweep = _sweep(experiment, profile)
    for dataset in sweep.get("dataset", [None]):
        for attack in sweep.get("attack", [None]):
            ov = [f"experiment={experiment}", f"profile={profile}"]
            ov += [f"dataset={dataset}"] if dataset else []
            ov += [f"attack={attack}"] if attack else []
            cfg = _compose(ov)
            OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
            check_profile(cfg)
            assert cfg.name in (experiment, "table1") and cfg.profile == profile
            assert int(cfg.batch_size) >= 1 and int(cfg.n_batches) >= 1
            assert "_target_" in cfg.attack and "_target_" in cfg.model


def _cfg_job(overrides) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.run", *overrides, "--cfg", "job"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return yaml.safe_load(out.stdout)


def test_cfg_job_prints_the_config_that_runs():
    """For every experiment x profile (at its sweep's last point): hydra's own ``--cfg job`` equals
    the config composed in-process, and the runner keeps that config as it is (no merge layer)."""
    cases = []
    for experiment, profile in PAIRS:
        ov = [f"experiment={experiment}", f"profile={profile}"]
        ov += [f"{k}={v[-1]}" for k, v in _sweep(experiment, profile).items()]
        cases.append(ov)
    with ThreadPoolExecutor(4) as pool:
        printed = list(pool.map(_cfg_job, cases))
    for ov, job in zip(cases, printed):
        assert job == OmegaConf.to_container(_compose(ov), resolve=False), ov
    assert not hasattr(bench.run.runner, "apply_profile") and not hasattr(bench.run.runner, "cli_overrides")


def test_profile_budgets_per_attack_and_dataset():
    g = _compose(["experiment=table1", "profile=quick", "attack=geiping", "dataset=imagenet720"])
    assert (g.attack.max_iterations, g.n_batches, g.attack.threads) == (10, 1, 1)
    s = _compose(["experiment=table1", "profile=quick", "attack=spear", "dataset=imagenet720"])
    assert "max_iterations" not in s.attack and s.n_batches == 2
    paper = _compose(["experiment=table1", "profile=paper"])
    assert paper.batch_size == 20 and paper.n_batches == 100 and paper.model.depth == 6
    cnn = _compose(["experiment=cnn", "profile=paper", "attack=spear_fi_geiping"])
    assert cnn.model._target_ == "bench.run.models.vgg16" and "channels" not in cnn.model
    assert cnn.dataset.name == "imagenet224" and cnn.attack.fi.iterations == 25000


def test_command_line_beats_profile():
    cfg = _compose(["experiment=table1", "profile=paper", "batch_size=7", "dataset=mnist"])
    assert cfg.batch_size == 7 and cfg.n_batches == 100 and cfg.dataset.name == "mnist"
    g = _compose(["experiment=table1", "profile=quick", "attack=geiping", "dataset=imagenet720",
                  "attack.max_iterations=5", "n_batches=3"])
    assert g.attack.max_iterations == 5 and g.n_batches == 3
    cnn = _compose(["experiment=cnn", "profile=paper", "model=small_cnn"])
    assert cnn.model.name == "small_cnn"
    job = _cfg_job(["experiment=table1", "profile=paper", "batch_size=7"])
    assert job["batch_size"] == 7 and job["n_batches"] == 100


def test_unknown_profile_is_a_clear_error():
    cfg = _compose(["experiment=tabular", "profile=paper_spear"])
    with pytest.raises(ConfigError, match="profile='paper_spear'.*'paper', 'quick'"):
        check_profile(cfg)
    out = subprocess.run([sys.executable, "-m", "bench.run", "experiment=tabular", "profile=paper_spear"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "conf/budget/tabular/" in out.stderr


def test_table1_paper_spear_profile_is_spear_alone_in_both_precisions():
    sweep = _sweep("table1", "paper_spear")
    assert sweep["attack"] == ["spear"] and sorted(sweep["dtype"]) == ["float32", "float64"]
    assert len(sweep["dataset"]) == 5
    cfg = _compose(["experiment=table1", "profile=paper_spear", "dtype=float32"])
    assert cfg.batch_size == 20 and cfg.n_batches == 100 and cfg.dtype == "float32"
    assert cfg.attack.search == "l1" and cfg.attack.threads == 1


def test_runtime_knobs_stay_out_of_the_resume_hash():
    def h(*ov):
        return config_hash(semantic_config(_compose(["experiment=cnn", "attack=spear_fi_geiping", *ov])))

    base = h()
    assert h("attack.threads=2", "attack.refine.progress=false", "attack.fi.threads=4",
             "attack.stage1.progress=true") == base
    assert h("attack.fi.iterations=7") != base


def test_recorded_config_reproduces_the_run(tmp_path):
    """A real run: the config hydra wrote to .hydra/config.yaml names the rows file the run wrote,
    and running again with other threads/progress recomputes nothing."""
    out = tmp_path / "out"
    ov = ["experiment=table1", "profile=quick", "dataset=mnist", "attack=spear", "batch_size=4",
          "n_batches=1", f"paths.results={tmp_path / 'results'}", f"hydra.run.dir={out}"]
    run = subprocess.run([sys.executable, "-m", "bench.run", *ov], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    recorded = OmegaConf.load(out / ".hydra" / "config.yaml")
    rows_file = run_paths(recorded, "spear", config_hash(semantic_config(recorded)))[1]
    rows = list(read_rows([rows_file]))
    assert len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["profile"] == "quick"
    again = Runner(_compose([*ov[:-1], "attack.threads=1", "attack.progress=false", "progress=false"]))
    assert again.path == rows_file and again._todo() == []
