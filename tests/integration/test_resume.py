"""Running the same command twice computes nothing the second time, also where a batch's samples
are not the plain ``select_batch(B)``: secure aggregation (clients × B samples) and
label-homogeneous batches. The run and the resume check select a batch with one function
(bench/client/batches.py::select_update_batch)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.record.rows import read_rows

REPO = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {"WANDB_MODE": "disabled", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "bench.run", "profile=quick", f"paths.results={tmp_path / 'results'}",
           f"hydra.run.dir={tmp_path / 'outputs'}", "n_batches=2", "save_images=0", "metrics.lpips=false",
           "attack.progress=false", *overrides]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("setting", [
    ("experiment=table1", "dataset=mnist", "defense=aggregate", "defense.clients=2", "batch_size=3"),
    ("experiment=label_homogeneous", "+dataset.label_homogeneous=true", "batch_size=4"),
], ids=["aggregate", "label_homogeneous"])
def test_the_same_command_twice_computes_nothing_the_second_time(tmp_path, setting):
    first = _run(tmp_path, *setting)
    assert first.returncode == 0, first.stderr[-3000:]
    (path,) = (tmp_path / "results" / "raw").glob("*/*.jsonl")
    rows = list(read_rows([path]))
    assert [r["batch_index"] for r in rows] == [0, 1]
    assert all(r["status"] == "ok" for r in rows), [r["error_msg"] for r in rows]
    if "defense=aggregate" in setting:
        assert all(len(r["sample_ids"]) == 6 for r in rows)  # 2 clients x 3 samples
    else:
        assert all(len(set(r["true_labels"])) == 1 for r in rows)

    second = _run(tmp_path, *setting)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "its data changed" not in second.stderr
    assert "resuming" in second.stderr and "2 batches already" in second.stderr
    assert len(list(read_rows([path]))) == 2  # no batch computed again
