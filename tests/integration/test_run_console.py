"""What ``python -m bench.run`` prints for its user (bench/run/console.py).

A summary line and the table command after every run, ``job i/N`` in multiruns, a warning for a
layer too narrow for the batch, a clean exit 2 for a missing dataset and "did you mean" for a
mistyped config-group option.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run.console import summary_line, table_command, unknown_option, width_warning

REPO = Path(__file__).resolve().parents[2]


def _run(args, tmp_path, timeout=300):
    env = dict(os.environ, SPEAR_RESULTS=str(tmp_path / "results"), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "bench.run", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------------- did you mean
def test_unknown_option_suggests_the_closest():
    msg = unknown_option(["attack=Spear"])
    assert msg and "did you mean spear?" in msg and "geiping" in msg
    assert "did you mean cifar10?" in unknown_option(["dataset=cifar", "attack=spear"])
    assert "Geipng" in unknown_option(["-m", "attack=spear,Geipng"])        # inside a sweep list
    assert unknown_option(["attack=spear", "attack.layer=3", "+experiment=table1", "seed=1",
                           "hydra/launcher=joblib", "dataset=mnist,cifar10"]) is None


def test_options_of_added_config_directories_count(tmp_path):
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "tiny.yaml").write_text("# @package _global_\nprofile: tiny\n")
    assert "did you mean quick?" not in (unknown_option(["profile=tiny"]) or "did you mean quick?")
    assert unknown_option(["profile=tiny", f"hydra.searchpath=[file://{tmp_path}]"]) is None
    assert unknown_option(["--config-dir", str(tmp_path), "profile=tiny"]) is None
    assert "did you mean tiny?" in unknown_option(["profile=tin", f"hydra.searchpath=[file://{tmp_path}]"])
    assert unknown_option(["profile=tin", "hydra.searchpath=[pkg://elsewhere.conf]"]) is None


def test_mistyped_option_exits_2_with_a_suggestion(tmp_path):
    proc = _run(["attack=Spear"], tmp_path, timeout=60)
    assert proc.returncode == 2
    assert "did you mean spear?" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_dataset_is_a_clean_error(tmp_path):
    proc = _run(["dataset=tiny_imagenet", "dataset.allow_standin=false",
                 f"paths.data_root={tmp_path / 'nodata'}"], tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: dataset 'tiny_imagenet' not found"), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "HYDRA_FULL_ERROR" not in proc.stderr


# ---------------------------------------------------------------------- summary, width, jobs
def test_summary_line_and_table_command():
    rows = [{"status": "ok", "exact_fraction": 1.0, "exact_psnr_db": 80.0, "psnr_mean": 290.0,
             "time_attack_s": 1.0},
            {"status": "partial", "exact_fraction": 0.5, "exact_psnr_db": 80.0, "psnr_mean": 50.0,
             "time_attack_s": 3.0}]
    line = summary_line(rows, run_id="quick-mnist-spear-x", wall_s=12.3)
    assert "1/2 batches ok (partial 1)" in line and "Acc 50%" in line
    assert "mean PSNR 170.0 dB" in line and "attack 2.00 s/batch" in line and "12.3 s in all" in line
    assert table_command("default", "quick") == "python -m bench.report --experiment default --profile quick"
    assert table_command("dp", "paper") == "python -m bench.report --experiment dp --profile paper"


def test_width_warning():
    from attacks.spear import SpearAttack
    from bench.run.models import fcnn

    narrow = fcnn((1, 28, 28), 10, width=8, depth=2)
    assert "not below the width 8" in width_warning(SpearAttack(), narrow, 10)
    assert "narrow for batch size 6" in width_warning(SpearAttack(), narrow, 6)
    assert width_warning(SpearAttack(), fcnn((1, 28, 28), 10, width=200, depth=2), 20) is None


def test_multirun_prints_job_lines_warning_and_summaries(tmp_path):
    proc = _run(["-m", "dataset=mnist", "model.width=4,64", "model.depth=2", "batch_size=4",
                 "n_batches=1", "time_budget_s=60", "metrics.lpips=false", "save_images=0",
                 f"hydra.sweep.dir={tmp_path / 'multirun'}"], tmp_path)
    err = proc.stderr
    assert proc.returncode == 0, err[-3000:]
    first, second = err.index("job 1/2: "), err.index("job 2/2: ")
    assert "model.width=4" in err[first:second] and "model.width=64" in err[second:]
    warning = err.index("warning: batch size 4 is not below the width 4")
    assert first < warning < second                       # the narrow job only
    assert err.count("table: python -m bench.report --experiment default --profile quick") == 2
    assert "1/1 batches ok, Acc 100%" in err[second:]
