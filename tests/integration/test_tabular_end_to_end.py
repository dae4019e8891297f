"""experiment=tabular end to end: hydra sweep over spear,tableak on Adult -> JSONL rows -> table."""
import subprocess
import sys
from pathlib import Path

from bench.record.rows import FIELDS, read_rows

REPO = Path(__file__).resolve().parents[2]


def test_tabular_sweep_to_table(tmp_path):
    results = tmp_path / "results"
    env = {"SPEAR_RESULTS": str(results), "WANDB_MODE": "disabled", "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}  # tiny tensors: one thread is fastest
    # A profile of the user's own, in a config directory added to hydra's search path: the sweep
    # over both attacks gives TabLeak (only) a tiny budget.
    conf = tmp_path / "conf"
    for rel, text in {"profile/tiny.yaml": "profile: tiny\n",
                      "budget/tabular/tiny.yaml": "defaults:\n  - _self_\n"
                      "  - optional tabular/tiny/attack@_global_: ${attack}\nn_batches: 1\nbatch_size: 6\n",
                      "budget/tabular/tiny/attack/tableak.yaml": "attack: {restarts: 2, iterations: 40}\n"}.items():
        (conf / rel).parent.mkdir(parents=True, exist_ok=True)
        (conf / rel).write_text("# @package _global_\n" + text)
    cmd = [sys.executable, "-m", "bench.run", "-m", "experiment=tabular", "profile=tiny",
           f"hydra.searchpath=[file://{conf}]", f"hydra.sweep.dir={tmp_path / 'multirun'}"]
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = {r["attack"]: r for r in read_rows((results / "raw" / "tabular").glob("*.jsonl"))}
    assert set(rows) == {"spear", "tableak"}
    for r in rows.values():
        assert set(FIELDS) <= set(r)
        assert r["dataset"] == "adult" and r["image_shape"] == [105] and r["batch_size"] == 6
        assert r["data_source"] in ("real", "stand-in:adult-synthetic")
        assert r["psnr_mean"] is None and r["status"] == "ok" and r["time_attack_s"] > 0
        assert 0 <= r["discrete_acc"] <= 1 and r["continuous_mae"] >= 0
    s, t = rows["spear"], rows["tableak"]
    assert s["discrete_acc"] == 1.0 and s["continuous_mae"] == 0.0 and s["grad_residual"] < 1e-8
    assert t["diag_restarts"] == 2 and t["diag_iterations"] == 40 and t["label_acc"] == 1.0

    p = subprocess.run([sys.executable, "-m", "bench.report", "--experiment", "tabular", "--profile", "tiny"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    md = (results / "tables" / "tabular.md").read_text()
    assert "| spear | Adult | 100.0 ± 0.0 | 100 | 0.0 ± 0.0 | 20.4 |" in md
    assert "| tableak | Adult |" in md and "4922.7" in md and "discrete acc" in md
    for ext in ("csv", "tex"):
        assert (results / "tables" / f"tabular.{ext}").exists()
