"""CI-Net in Table 1's main comparison: the client model's activation is a row field, the sigmoid
client is out of SPEAR's reach, and both CI-Net lines of the comparison come from rows."""
from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bench.record.rows import read_rows
from bench.run.runner import Runner
from bench.report.build import build, table_path

CONF = Path(__file__).resolve().parents[2] / "conf"


def _compose(overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def _run(results: Path, attack: str, activation: str, **extra) -> dict:
    cfg = _compose(["experiment=table1", f"attack={attack}", "dataset=cifar10", f"model.activation={activation}",
                    f"paths.results={results}"])
    cfg.batch_size, cfg.n_batches, cfg.save_images, cfg.progress = 3, 1, 0, False
    cfg.metrics.lpips = False
    for k, v in extra.items():
        OmegaConf.update(cfg, k, v)
    return list(read_rows([Runner(cfg).run()]))[-1]


def test_ci_net_rows_fill_the_main_comparison(tmp_path):
    results = tmp_path / "results"
    budget = {"attack.max_iterations": 3, "attack.threads": 1, "attack.progress": False}
    sig = _run(results, "ci_net", "sigmoid", **budget)
    relu = _run(results, "ci_net", "relu", **budget)
    spear = _run(results, "spear", "sigmoid", **{"attack.progress": False})
    assert (sig["activation"], relu["activation"], spear["activation"]) == ("sigmoid", "relu", "sigmoid")
    assert sig["status"] == relu["status"] == "ok" and sig["attack"] == "ci_net"
    assert sig["diag_iterations"] == 3 and sig["diag_seconds_per_iteration"] > 0
    assert sig["setting_hash"] != relu["setting_hash"]  # the activation is part of the setting
    # the sigmoid client has no ReLU for SPEAR to exploit: a row saying so, not a crash
    assert spear["status"] == "not_applicable" and "ReLU" in spear["error_msg"]
    md = table_path(results, build(results, "table1", None)).read_text()
    assert "| ci_net | CIFAR-10 | activation=relu |" in md and "| ci_net | CIFAR-10 | activation=sigmoid |" in md
    comp = md.split("#### main comparison")[1]
    line = {row.split("|")[1].strip(): row for row in comp.splitlines() if row.startswith("| ci_net")}
    assert set(line) == {"ci_net_sigmoid", "ci_net_relu"}
    for method, row in (("ci_net_sigmoid", sig), ("ci_net_relu", relu)):
        cells = [c.strip() for c in line[method].split("|")[1:-1]]
        assert cells[1] == "CIFAR-10" and cells[2] == f"{row['psnr_mean']:.1f}" and "ran" in cells[10]
        assert cells[3] == ("38.0" if method == "ci_net_sigmoid" else "15.6")
    assert "not run" not in "".join(line.values())
    assert "ci_net: iterations per batch CIFAR-10 3" in md and "s/it" in md


def test_quick_and_paper_profiles_budget_ci_net():
    q = _compose(["experiment=table1_ci_net", "profile=quick", "model.activation=sigmoid"])
    assert (q.attack.max_iterations, q.n_batches, q.batch_size, q.attack.threads) == (500, 1, 10, 1)
    assert q.model.activation == "sigmoid" and q.name == "table1" and q.attack._target_.endswith("CINetAttack")
    p = _compose(["experiment=table1_ci_net", "profile=paper", "dataset=imagenet224"])
    assert (p.attack.max_iterations, p.batch_size, p.n_batches) == (30000, 20, 100)
    assert _compose(["experiment=table1_ci_net", "profile=paper", "dataset=cifar10"]).attack.max_iterations == 2000
    g = _compose(["experiment=table1", "profile=quick", "attack=geiping", "dataset=cifar10"])
    assert g.attack.max_iterations == 1000  # Table 1's own budgets untouched
