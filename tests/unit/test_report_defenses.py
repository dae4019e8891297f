"""The defense tables and figures (bench/report/tables/defenses.py, figures/defenses.py) from
synthetic rows, no attack."""
import json

from bench.report.__main__ import main


def _row(experiment, i, **kw):
    base = dict(schema_version=1, run_id="r", experiment=experiment, profile="quick", batch_index=i,
                config_hash=f"{experiment}-{json.dumps(kw, sort_keys=True)}", dataset="cifar10",
                data_source="stand-in:pictures", model="fcnn", width=200, depth=6, batch_size=10,
                status="ok", psnr_mean=290.0, exact_fraction=1.0, time_attack_s=1.0, attack="spear")
    base.update(kw)
    base["run_id"] = base["config_hash"]  # one file (run) per setting, as the runner writes them
    return base


def _write(root, experiment, rows):
    d = root / "raw" / experiment
    d.mkdir(parents=True, exist_ok=True)
    (d / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_report_writes_four_tables_and_three_figures(tmp_path):
    _write(tmp_path, "dp", [_row("dp", 0, defense_noise_multiplier=s, dp_epsilon=1e308 if s == 0 else 10 / s,
                                 **({} if s == 0 else {"status": "failed", "psnr_mean": 10.0,
                                                       "exact_fraction": 0.0}))
                            for s in (0.0, 1e-3)])
    _write(tmp_path, "fedavg", [_row("fedavg", 0, defense_epochs=e, defense_lr=lr, defense_local_batch=10)
                                for e in (1, 2) for lr in (1e-3, 1e-1)])
    _write(tmp_path, "depth", [_row("depth", 0, diag_attacked_layer=str(k), diag_layer_n=200,
                                    feature_cosine=1.0 if k < 5 else 0.5) for k in (1, 3, 5)])
    _write(tmp_path, "label_homogeneous", [_row("label_homogeneous", 0, label_homogeneous=h, label_acc=None)
                                           for h in (True, False)])
    assert main(["--experiment", "dp", "fedavg", "depth", "label_homogeneous", "--results", str(tmp_path),
                 "--profile", "quick"]) == 0
    for t in ("dp", "fedavg", "depth", "labels"):
        for ext in ("md", "csv", "tex"):
            assert (tmp_path / "tables" / f"{t}.{ext}").stat().st_size > 0
    for f in ("fig_dp", "fig_fedavg", "fig_depth"):
        assert (tmp_path / "figures" / f"{f}.png").exists() and (tmp_path / "figures" / f"{f}.pdf").exists()
    dp = (tmp_path / "tables" / "dp.md").read_text()
    assert "∞" in dp and "failed 1" in dp
    depth = (tmp_path / "tables" / "depth.md").read_text()
    assert "| spear | 3 |" in depth  # layer names 1, 3, 5 are linear layers 1, 2, 3
    assert "label-homogeneous" in (tmp_path / "tables" / "labels.md").read_text()
