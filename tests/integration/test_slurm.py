"""SLURM end to end (marker ``slurm``): a two-job sweep submitted as one job array to a live
cluster, both JSONL files, the merged table, and a resubmission that adds no row. Skipped unless
`sinfo` answers within seconds with an idle or mixed node: start one with `make slurm-local` (root).
The other tests here (launcher config, resolver, script) need no cluster."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]


def _cluster() -> tuple[str | None, str | None]:
    """(why the cluster is unusable or None, its default partition)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no sinfo/sbatch on PATH", None
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%P %t"], capture_output=True, text=True, timeout=5)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 5 s (no slurmctld running?)", None
    if out.returncode != 0:
        return f"sinfo failed: {(out.stderr.strip().splitlines() or ['?'])[0]}", None
    usable = [line.split() for line in out.stdout.splitlines()
              if len(line.split()) == 2 and line.split()[1].rstrip("*~#!%$@^-") in ("idle", "mix")]
    if not usable:
        return f"no idle node (sinfo: {out.stdout.strip() or 'empty'})", None
    default = [p for p, _ in usable if p.endswith("*")]
    return None, (default or [usable[0][0]])[0].rstrip("*")


WHY, PARTITION = _cluster()
needs_cluster = pytest.mark.skipif(
    WHY is not None, reason=f"no usable SLURM cluster ({WHY}); start one with `make slurm-local` (root)")


def _sweep(results: Path, sweep_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, SPEAR_RESULTS=str(results), WANDB_MODE="disabled")
    cmd = [sys.executable, "-m", "bench.run", "-m", "hydra/launcher=slurm_local",
           f"hydra.launcher.partition={PARTITION}", "hydra.launcher.mem_gb=1",
           "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={sweep_dir}",
           "name=slurm_test", "dataset=mnist", "batch_size=3,4", "n_batches=2", "model.width=32",
           "model.depth=2", "attack.max_proposals=20000", "save_images=0", "metrics.lpips=false"]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=540)


@pytest.mark.slurm
@needs_cluster
def test_two_job_sweep_runs_as_one_slurm_array_and_merges():
    from bench.record.rows import read_rows
    from bench.report.__main__ import main as report_main

    # Under the repository (not /tmp): on a real cluster the jobs run on other nodes.
    (REPO / "multirun").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pytest-slurm-", dir=REPO / "multirun"))
    try:
        results = work / "results"
        proc = _sweep(results, work / "ms1")
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        m = re.search(r"submitted SLURM array job (\d+) \((\d+) tasks\)", proc.stdout + proc.stderr)
        assert m and m.group(2) == "2", proc.stdout[-2000:]
        array = m.group(1)
        # one array, two tasks, each with its own submitit folder and logs
        assert sorted(p.name for p in (work / "ms1" / ".submitit").glob(f"{array}_*")) == \
            [f"{array}_0", f"{array}_1"]

        files = sorted((results / "raw" / "slurm_test").glob("*.jsonl"))
        assert len(files) == 2
        per_file = [list(read_rows([f])) for f in files]
        for f, rows in zip(files, per_file):
            assert sorted(r["batch_index"] for r in rows) == [0, 1]
            assert {r["run_id"] for r in rows} == {f.stem}
            assert all(r["status"] == "ok" and r["device"] == "cpu" for r in rows)
        assert {rows[0]["batch_size"] for rows in per_file} == {3, 4}

        assert report_main(["--experiment", "slurm_test", "--results", str(results)]) == 0
        table = pd.read_csv(results / "tables" / "slurm_test.csv")
        # two settings (B=3, B=4): one table line each, never one merged line
        assert len(table) == 2 and sorted(table["n"].astype(int)) == [2, 2]
        assert sorted(table["B"].astype(int)) == [3, 4]

        # Resubmitting the finished sweep resumes both jobs: nothing rerun, nothing duplicated.
        proc = _sweep(results, work / "ms2")
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        assert [len(list(read_rows([f]))) for f in files] == [2, 2]
        logs = "".join(p.read_text() for p in (work / "ms2" / ".submitit").glob("*_*/*_log.err"))
        assert logs.count("resuming") == 2, logs[-2000:]
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------ no cluster needed
def test_gpus_requested_only_for_cuda():
    from bench.run.slurm import gpus_for_device

    assert gpus_for_device("cuda") == 1 and gpus_for_device("cuda:1") == 1
    assert gpus_for_device("auto") is None and gpus_for_device("cpu") is None


def test_local_launcher_is_cpu_only_and_extends_slurm():
    from hydra import compose, initialize_config_dir

    import bench  # noqa: F401  (registers the resolver)

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm_local", "experiment=table1"],
                      return_hydra_config=True)
    lc = cfg.hydra.launcher
    assert lc._target_.endswith("SpearSlurmLauncher")
    assert lc.partition == "local" and lc.gpus_per_node is None and lc.cpus_per_task == 1
    assert lc.name == "spear-table1" and lc.max_num_timeout >= 1
    assert any("OMP_NUM_THREADS" in line for line in lc.setup)


def test_failure_report_names_each_unfinished_task_and_how_to_resubmit():
    from hydra_plugins.spear_bench_launcher.slurm_launcher import _failure_report

    text = _failure_report([(3, ["attack=geiping", "dataset=cifar10"], "CANCELLED by 0", "no output",
                             "/x/3_3_0_log.err")], 10, ["hydra/launcher=slurm_local"])
    assert text.startswith("1 of 10 SLURM array tasks did not finish")
    assert "#3 [CANCELLED by 0] attack=geiping dataset=cifar10" in text and "/x/3_3_0_log.err" in text
    assert "python -m bench.run -m hydra/launcher=slurm_local attack=geiping dataset=cifar10" in text


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_slurm_local_script_says_it_needs_root():
    script = REPO / "scripts" / "slurm_local.sh"
    if os.geteuid() == 0:  # drop to nobody
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", str(script), "start"]
    else:
        cmd = ["bash", str(script), "start"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd="/")
    assert proc.returncode != 0
    assert "needs root" in proc.stderr
