"""Every user-facing make target, run the way a user runs it: ``make <target> PROFILE=smoke`` in
the repository, into a fresh results folder (``RESULTS=<tmp>``), with the `smoke` profile of each
experiment (conf/budget/<experiment>/smoke.yaml: one batch or a few, tiny budgets, one point per
sweep axis where the experiment sweeps by profile). Each target must exit 0 and write every table and figure it
promises, non-empty; none may write into the repository's own results/, multirun/ or outputs/.

``make test-smoke`` runs these (marker ``make_targets``); ``.ci/run`` runs it after ``make test``.
Adding a target is one line in TARGETS; the last test fails for a target of the Makefile's help
that is in neither TARGETS nor NOT_RUN_HERE.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

TABLE = ("md", "csv", "tex")
PLOT = ("png", "pdf", "csv")  # a plot's CSV holds the plotted numbers


def _report(*experiments: str) -> tuple[str, ...]:
    """What every target's report step writes besides its tables and figures: each experiment's
    manifest and the page."""
    return (*(f"report/{e}.json" for e in experiments), "index.html")


# (goals, extra make arguments, promised outputs): goals are one or more make targets run in
# order (a report may need rows first); outputs are globs under the results folder, each must
# match at least one file and every match must be non-empty. {results} in an argument is the
# results folder.
TARGETS = [
    ("reproduce-table1", (), (
        "raw/table1/smoke-*.jsonl", *(f"tables/table1.{s}" for s in TABLE),
        *(f"figures/table1/teaser_smoke_{d}_b0.png"
          for d in ("mnist", "cifar10", "tiny_imagenet", "imagenet224", "imagenet720")),
        *_report("table1"))),
    ("reproduce-tabular", (), (
        "raw/tabular/smoke-*.jsonl", *(f"tables/tabular.{s}" for s in TABLE), *_report("tabular"))),
    ("reproduce-cnn", (), (
        "raw/cnn/smoke-*.jsonl", *(f"tables/cnn.{s}" for s in TABLE),
        "figures/cnn/teaser_smoke_tiny_imagenet_b0.png", *_report("cnn"))),
    ("reproduce-defenses", (), (
        *(f"raw/{e}/smoke-*.jsonl" for e in ("dp", "fedavg", "depth", "label_homogeneous")),
        *(f"tables/{t}.{s}" for t in ("dp", "fedavg", "depth", "labels") for s in TABLE),
        *(f"figures/fig_{f}.{s}" for f in ("dp", "fedavg", "depth") for s in PLOT),
        *_report("dp", "fedavg", "depth", "label_homogeneous"))),
    ("reproduce-large-batch", (), (
        "raw/large_batch/smoke-*.jsonl", *(f"tables/large_batch.{s}" for s in TABLE),
        *(f"figures/fig_large_batch.{s}" for s in PLOT), *_report("large_batch"))),
    ("figures", (), (
        *(f"figures/{f}.{s}" for f in ("fig_failure_width", "fig_sampling", "fig_two_stage") for s in PLOT),
        "figures/fig_teaser/teaser_smoke_mnist_b0.png", "figures/fig_teaser/teaser_smoke_mnist_b0.pdf",
        *_report("fig_failure_width", "fig_sampling", "fig_two_stage", "fig_teaser"))),
    ("perf-spear", ("PERF_ARGS=--batch-sizes 4 --batches 1 --width 32 --threads 1 "
                    "--time-budget 30 --json {results}/perf/spear.json",), (
        "perf/spear.json",)),
    # the report of every experiment with rows: here the tabular ones
    ("reproduce-tabular report", (), ("tables/tabular.md", *_report("tabular"))),
]

# targets of `make help` that this test does not run, and why
NOT_RUN_HERE = {
    "help": "prints the list (read by the last test)",
    "install": "what CI runs before the tests",
    "test": "the fast suite itself", "test-all": "the whole suite", "test-smoke": "runs this file",
    "weights": "needs a network", "data": "needs a network",
    "slurm-local": "installs SLURM as root", "slurm-local-stop": "stops it",
    "clean": "deletes the repository's results",
}

WATCHED = ("results", "multirun", "outputs")  # a target must leave these folders of the repo alone


def _tree(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime
            for d in WATCHED if (root / d).exists() for p in (root / d).rglob("*") if p.is_file()}


def _make(goals: str, args: tuple[str, ...], results: Path, tmp: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "SPEAR_RESULTS")}
    # this checkout's code first (the venv may hold an editable install of another checkout)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["WANDB_MODE"] = "disabled"
    cmd = ["make", "--no-print-directory", *goals.split(), "PROFILE=smoke", "LOGGER=none",
           f"VENV={sys.prefix}", f"RESULTS={results}", f"HYDRA_ARGS=hydra.sweep.dir={tmp / 'multirun'}",
           *(a.format(results=results) for a in args)]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.make_targets
@pytest.mark.parametrize("goals, args, outputs", TARGETS, ids=[t[0].split()[-1] for t in TARGETS])
def test_make_target_writes_what_it_promises(tmp_path, goals, args, outputs):
    results = tmp_path / "results"
    before = _tree(REPO)
    t0 = time.perf_counter()
    proc = _make(goals, args, results, tmp_path)
    took = time.perf_counter() - t0
    print(f"make {goals} PROFILE=smoke: exit {proc.returncode} after {took:.1f} s")
    log = f"\n--- stdout (tail)\n{proc.stdout[-3000:]}\n--- stderr (tail)\n{proc.stderr[-5000:]}"
    assert proc.returncode == 0, f"make {goals} PROFILE=smoke exited {proc.returncode}{log}"
    missing, empty = [], []
    for pattern in outputs:
        found = sorted(results.glob(pattern))
        if not found:
            missing.append(pattern)
        empty += [str(p.relative_to(results)) for p in found if p.stat().st_size == 0]
    written = sorted(str(p.relative_to(results)) for p in results.rglob("*") if p.is_file())
    assert not missing and not empty, (
        f"make {goals}: promised but not written: {missing}; written empty: {empty}; "
        f"written: {written}{log}")
    after = _tree(REPO)
    leaked = sorted(k for k, v in after.items() if before.get(k) != v)
    assert not leaked, f"make {goals} RESULTS={results} wrote into the repository: {leaked[:10]}"


def test_every_make_target_is_run_here_or_excused():
    """A target a user can type is either smoke-tested above or listed with a reason."""
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-zA-Z0-9_-]+):.*## ", text, flags=re.M))
    run = {g for goals, _, _ in TARGETS for g in goals.split()}
    assert "figures" in targets and "reproduce-table1" in targets  # the pattern reads the Makefile
    assert targets - run - set(NOT_RUN_HERE) == set(), (
        "add a line to TARGETS (goals, make args, promised outputs) for these targets, or to "
        "NOT_RUN_HERE with the reason")
    assert run <= targets, f"TARGETS names targets the Makefile lacks: {sorted(run - targets)}"
