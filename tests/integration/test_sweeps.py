"""Sweeps: run ids unique across sweep parameters, the SLURM launcher composes (nothing is
submitted), and a local joblib multirun writes one JSONL per job that the table merges."""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from bench.record.rows import config_hash, read_rows
from bench.run.runner import run_paths, semantic_config

REPO = Path(__file__).resolve().parents[2]
CONF = str(REPO / "conf")


def _compose(overrides, hydra_cfg=False):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra_cfg)


def _run_id(overrides) -> tuple[str, Path]:
    cfg = _compose(overrides)
    return run_paths(cfg, "spear", config_hash(semantic_config(cfg)))


def test_run_ids_unique_across_seed_batch_size_and_width():
    grid = list(itertools.product([0, 1], [4, 8], [32, 64]))
    ids = {}
    for seed, b, w in grid:
        ov = [f"seed={seed}", f"batch_size={b}", f"model.width={w}", "dataset=mnist"]
        ids[(seed, b, w)] = _run_id(ov)
    assert len({rid for rid, _ in ids.values()}) == len(grid)
    assert len({p for _, p in ids.values()}) == len(grid)
    # the same setting gives the same id (resume finds its file)
    assert _run_id(["seed=1", "batch_size=8", "model.width=64", "dataset=mnist"]) == ids[(1, 8, 64)]
    # and datasets differ too
    assert _run_id(["dataset=cifar10"])[0] != _run_id(["dataset=mnist"])[0]


@pytest.mark.parametrize("experiment", ["fig_failure_width", "fig_sampling", "fig_two_stage"])
@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_figure_sweep_grids_give_distinct_run_ids(experiment, profile):
    """Every job of a figure's sweep grid writes its own file."""
    cfg = _compose([f"experiment={experiment}", f"profile={profile}"], hydra_cfg=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True)
    assert params, f"{experiment} defines no sweep"
    keys = list(params)
    values = [str(params[k]).split(",") for k in keys]
    combos = list(itertools.product(*values))
    assert len(combos) >= 4
    base = _compose([f"experiment={experiment}", f"profile={profile}"])
    ids = set()
    for combo in combos:  # what each sweep job's command line sets, without recomposing
        ov = [f"{k}={v}" for k, v in zip(keys, combo)]
        cfg = base.copy()
        for o in ov:
            key, _, value = o.partition("=")
            OmegaConf.update(cfg, key, _parse(value))
        ids.add(run_paths(cfg, "spear", config_hash(semantic_config(cfg)))[0])
    assert len(ids) == len(combos)


def _parse(value: str):
    return {"true": True, "false": False}.get(value, int(value) if value.lstrip("-").isdigit() else value)


@pytest.mark.filterwarnings("ignore:Setting .max_num_timeout. is deprecated")
def test_slurm_launcher_composes_and_renders_sbatch_without_submitting(tmp_path, monkeypatch):
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    # device=auto|cpu asks for no GPU (CPU-only partitions work); device=cuda for one per job
    cpu = _compose(["hydra/launcher=slurm", "experiment=fig_sampling"], hydra_cfg=True)
    assert cpu.hydra.launcher.gpus_per_node is None
    cfg = _compose(["hydra/launcher=slurm", "experiment=fig_sampling", "hydra.launcher.partition=gpu",
                    "device=cuda", "hydra.launcher.timeout_min=90", f"hydra.sweep.dir={tmp_path}"],
                   hydra_cfg=True)
    lc = cfg.hydra.launcher
    assert lc._target_.endswith("SpearSlurmLauncher")
    assert lc.gpus_per_node == 1 and lc.partition == "gpu" and lc.timeout_min == 90
    launcher = instantiate(lc)
    # hydra's plugin scan may load the plugin modules a second time: compare classes by name
    assert SlurmLauncher.__name__ in [c.__name__ for c in type(launcher).__mro__]

    # Build the executor exactly as SlurmLauncher.launch does, then render the sbatch script;
    # nothing is submitted. submitit insists on `srun` being present: pretend it is.
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", staticmethod(lambda: 2))
    params = dict(launcher.params)
    executor = submitit.AutoExecutor(cluster="slurm", folder=str(tmp_path / "submitit"),
                                     max_num_timeout=params.pop("max_num_timeout"))
    params.pop("submitit_folder")
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    text = executor._executor._make_submission_file_text("python -m bench.run", "uid")
    assert "#SBATCH --partition=gpu" in text
    assert "#SBATCH --gpus-per-node=1" in text
    assert "#SBATCH --time=90" in text
    assert not list((tmp_path / "submitit").glob("*_submitted.pkl"))


def test_joblib_multirun_two_jobs_merge_into_one_table(tmp_results, tmp_path):
    env = dict(os.environ, SPEAR_RESULTS=str(tmp_results))
    cmd = [sys.executable, "-m", "bench.run", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
           "name=sweep_test", "dataset=mnist", "batch_size=3,4", "n_batches=1", "model.width=32",
           "attack.max_proposals=20000",
           "model.depth=2", "save_images=0", "metrics.lpips=false", f"hydra.sweep.dir={tmp_path / 'ms'}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted((tmp_results / "raw" / "sweep_test").glob("*.jsonl"))
    assert len(files) == 2
    per_file = [list(read_rows([f])) for f in files]
    for f, rows in zip(files, per_file):
        assert len(rows) == 1 and rows[0]["run_id"] == f.stem  # one job, one file
    assert {rows[0]["batch_size"] for rows in per_file} == {3, 4}
    assert len({rows[0]["config_hash"] for rows in per_file}) == 2

    from bench.report.__main__ import main as report_main

    assert report_main(["--experiment", "sweep_test", "--results", str(tmp_results)]) == 0
    table = pd.read_csv(tmp_results / "tables" / "sweep_test.csv")
    # two batch sizes are two settings: one table line each, the differing key named
    assert len(table) == 2 and table["n"].tolist() == [1, 1]
    assert sorted(table["setting"]) == ["B=3", "B=4"]
