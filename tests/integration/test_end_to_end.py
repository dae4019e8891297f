"""Config -> data -> model -> gradient -> SPEAR -> matching -> metrics -> JSONL -> table."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.record.rows import FIELDS, read_rows
from bench.report.build import build, table_path

REPO = Path(__file__).resolve().parents[2]


def _run(results: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {"SPEAR_RESULTS": str(results), "WANDB_MODE": "disabled", "PATH": "/usr/bin:/bin",
           "HOME": str(results.parent)}
    cmd = [sys.executable, "-m", "bench.run", "experiment=table1", "profile=quick",
           f"hydra.run.dir={results.parent / 'outputs'}", *overrides]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_config_to_table_and_resume(tmp_path):
    results = tmp_path / "results"
    p = _run(results, "dataset=cifar10", "batch_size=6", "n_batches=2")
    assert p.returncode == 0, p.stderr[-3000:]
    files = list((results / "raw" / "table1").glob("*.jsonl"))
    assert len(files) == 1
    rows = list(read_rows(files))
    assert [r["batch_index"] for r in rows] == [0, 1]
    for r in rows:
        assert set(FIELDS) <= set(r)
        assert r["status"] == "ok" and r["psnr_min"] >= 100 and r["exact_fraction"] == 1.0
        assert r["data_source"] == "stand-in:pictures" and r["batch_size"] == 6
        assert r["grad_residual"] < 1e-8 and r["time_attack_s"] > 0
        assert len(r["sample_ids"]) == 6 and r["diag_batch_size_est"] == 6
    assert list((results / "figures" / "table1").glob("grid_*.png"))

    # resume: asking for 3 batches runs only the missing one
    p = _run(results, "dataset=cifar10", "batch_size=6", "n_batches=3")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "resuming" in p.stderr
    rows = list(read_rows(files))
    assert [r["batch_index"] for r in rows] == [0, 1, 2]

    md = table_path(results, build(results, "table1", "quick")).read_text()
    assert "| spear | CIFAR-10 |" in md and "stand-in" in md and "106.6" in md
    for ext in ("csv", "tex"):
        assert (results / "tables" / f"table1.{ext}").exists()


def test_not_applicable_is_a_row_not_a_crash(tmp_path):
    results = tmp_path / "results"
    p = _run(results, "dataset=mnist", "batch_size=4", "n_batches=1", "model.activation=sigmoid")
    assert p.returncode == 0, p.stderr[-3000:]
    (row,) = read_rows((results / "raw" / "table1").glob("*.jsonl"))
    assert row["status"] == "not_applicable" and "ReLU" in row["error_msg"]
    json.dumps(row)


def test_missing_real_data_without_standin_fails_with_a_clear_message(tmp_path):
    p = _run(tmp_path / "results", "dataset=tiny_imagenet", "dataset.allow_standin=false",
             f"paths.data_root={tmp_path}")
    assert p.returncode != 0
    assert "tiny-imagenet-200" in p.stderr and "allow_standin" in p.stderr


def test_table_without_rows_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="make reproduce-table1"):
        build(tmp_path, "table1", "quick")
