"""logger=wandb writes an offline W&B run (no network) that holds the rows, the grid and tables.

The suite runs with WANDB_MODE=disabled; these tests switch to offline mode inside the test and
point W&B at an unreachable server, so nothing can leave the machine.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from bench.record.loggers import WandbLogger, read_offline_run
from bench.record.rows import read_rows

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.wandb


@pytest.fixture
def wandb_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens: no network
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return tmp_path


def _flush() -> None:
    """W&B writes run files from a service process; teardown waits until they are on disk."""
    import wandb

    wandb.teardown()


def _only_run(folder: Path) -> Path:
    runs = sorted((folder / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    return runs[0]


def test_logger_wandb_mirrors_rows_grid_and_tables(wandb_offline, tmp_results):
    out = wandb_offline / "job"
    cmd = [sys.executable, "-m", "bench.run", "logger=wandb", "name=wandb_test", "dataset=mnist",
           "batch_size=3", "n_batches=2", "model.width=32", "model.depth=2", "save_images=1",
           "metrics.lpips=false", f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]

    rows = list(read_rows(sorted((tmp_results / "raw" / "wandb_test").glob("*.jsonl"))))
    assert [r["batch_index"] for r in rows] == [0, 1]
    run = read_offline_run(_only_run(out))

    # who/what: filterable in the W&B UI
    assert run["name"] == rows[0]["run_id"]
    assert run["group"] == "wandb_test" and run["job_type"] == "spear"
    assert run["config"]["config_hash"] == rows[0]["config_hash"]
    assert run["config"]["batch_size"] == 3 and run["config"]["model"]["width"] == 32
    assert run["exit_code"] == 0

    # every row, at step = batch index, with the row's numbers
    hist = {h["_step"]: h for h in run["history"] if "batch_index" in h}
    assert sorted(hist) == [0, 1]
    for r in rows:
        h = hist[r["batch_index"]]
        assert h["status"] == r["status"]
        assert h["psnr_mean"] == pytest.approx(r["psnr_mean"])
        assert h["time_attack_s"] == pytest.approx(r["time_attack_s"])

    # the reconstruction grid as an image, the run's summary and its rows as tables
    files = run["files"]
    assert any(f.startswith("media/images/reconstruction_grid") and f.endswith(".png") for f in files)
    tables = {f.split("/")[-1].split("_")[0]: f for f in files if f.endswith(".table.json")}
    assert {"summary", "rows"} <= set(tables), files
    files_dir = _only_run(out) / "files"
    rows_table = json.loads((files_dir / tables["rows"]).read_text())
    col = rows_table["columns"].index("psnr_mean")
    assert [d[col] for d in rows_table["data"]] == pytest.approx([r["psnr_mean"] for r in rows])
    summary = json.loads((files_dir / tables["summary"]).read_text())
    assert summary["data"][0][summary["columns"].index("n")] == 2

    # the table step: python -m bench.report ... --wandb logs the merged table as its own run
    from bench.report.__main__ import main as report_main

    assert report_main(["--experiment", "wandb_test", "--results", str(tmp_results), "--wandb",
                        "--wandb-dir", str(wandb_offline / "tables")]) == 0
    _flush()
    trun = read_offline_run(_only_run(wandb_offline / "tables"))
    assert trun["job_type"] == "table" and trun["group"] == "wandb_test" and trun["exit_code"] == 0
    tfile = next(f for f in trun["files"] if f.endswith(".table.json"))
    merged = json.loads((_only_run(wandb_offline / "tables") / "files" / tfile).read_text())
    csv = pd.read_csv(tmp_results / "tables" / "wandb_test.csv")
    assert merged["columns"] == list(csv.columns)
    assert len(merged["data"]) == len(csv) == 1


def test_failed_run_is_marked_failed(wandb_offline):
    logger = WandbLogger(project="spear-bench", mode="offline", dir=str(wandb_offline))
    cfg = OmegaConf.create({"name": "exp", "profile": "quick", "dataset": {"name": "mnist"}, "seed": 0})
    logger.start(cfg, "quick-mnist-spear-0123456789", "spear", config_hash="0123456789abcdef")
    logger.log_row({"batch_index": 0, "status": "error", "psnr_mean": None, "error_msg": "boom"})
    logger.finish(failed=True)
    _flush()
    run = read_offline_run(_only_run(wandb_offline))
    assert run["exit_code"] == 1
    assert run["summary"]["failed"] is True
    assert run["summary"]["config_hash"] == "0123456789abcdef"
    assert run["history"][0]["status"] == "error"
    assert "psnr_mean" not in run["history"][0]  # missing values are not logged as numbers
    assert logger.run is None  # finished; a second finish is a no-op
    logger.finish(failed=False)


def test_disabled_mode_writes_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    logger = WandbLogger(dir=str(tmp_path))
    assert logger.mode == "disabled"
    logger.start({"name": "exp"}, "r", "spear")
    logger.log_row({"batch_index": 0, "psnr_mean": 1.0})
    logger.finish()
    assert not list(tmp_path.rglob("offline-run-*"))


def test_wandb_is_quiet_and_an_offline_run_can_be_shown(wandb_offline, monkeypatch, capfd):
    """No W&B run-history block on the console; one line names the run folder, and
    ``python -m bench.record.loggers show <folder>`` prints the run without a network."""
    monkeypatch.delenv("WANDB_SILENT", raising=False)
    logger = WandbLogger(project="spear-bench", mode="offline", dir=str(wandb_offline))
    cfg = OmegaConf.create({"name": "exp", "profile": "quick", "dataset": {"name": "mnist"}, "seed": 0})
    logger.start(cfg, "quick-mnist-spear-0123456789", "spear", config_hash="0123456789abcdef")
    for b in range(3):
        logger.log_row({"batch_index": b, "status": "ok", "psnr_mean": 290.0 + b, "exact_fraction": 1.0})
    logger.finish()
    _flush()
    out, err = capfd.readouterr()
    assert "Run history" not in out + err and "Run summary" not in out + err
    assert "python -m bench.record.loggers show" in err

    from bench.record.loggers import main as loggers_main

    assert loggers_main(["show", str(wandb_offline)]) == 0        # a folder above the run
    shown = capfd.readouterr().out
    assert "run quick-mnist-spear-0123456789" in shown and "history: 3 steps" in shown
    assert "292" in shown and "config_hash=0123456789abcdef" in shown
    assert loggers_main(["show", str(wandb_offline / "nothing-here")]) == 2
