"""The large-batch table and figure (bench/report/tables/large_batch.py, figures/large_batch.py)."""
from __future__ import annotations

import json

import pandas as pd

from bench.report.__main__ import main
from bench.report.figures import large_batch as fig
from bench.report.tables.large_batch import summary, target_notes, wall
from bench.record.rows import make_row


def _rows():
    rows = []
    for attack, ok in (("spear", False), ("spear-dictionary", True), ("spear+geiping", True)):
        for i in range(2):
            rows.append(make_row(experiment="large_batch", profile="quick", batch_index=i,
                                 config_hash=f"{attack}-64", attack=attack, width=1000, batch_size=64,
                                 dataset="cifar10", data_source="stand-in:crops", model="fcnn", depth=6,
                                 status="ok" if ok else "failed", exact_fraction=1.0 if ok else 0.0,
                                 exact_psnr_db=80.0, time_attack_s=10.0 + i,
                                 diag_proposals=100, diag_candidates=64 if ok else 50))
    return rows


def test_large_batch_table_and_figure(tmp_path):
    rows = _rows()
    raw = tmp_path / "raw" / "large_batch"
    raw.mkdir(parents=True)
    (raw / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    res = summary(pd.DataFrame(rows))
    assert set(res["method"]) == {"spear", "spear-dictionary", "spear+geiping"}
    assert res.set_index("method").loc["spear-dictionary", "acc"] == 2
    assert res.set_index("method").loc["spear", "acc_pct"] == 0.0
    assert any("b=64, width 1000" in n and "2/2" in n for n in target_notes(res))
    assert round(wall(1000)) == 63
    assert main(["--experiment", "large_batch", "--profile", "quick", "--results", str(tmp_path)]) == 0
    md, png = tmp_path / "tables" / "large_batch.md", tmp_path / "figures" / "fig_large_batch.png"
    assert md.exists() and png.exists() and png.with_suffix(".pdf").exists()
    assert "spear-dictionary" in md.read_text()


def test_acc_and_certified_part_where_the_certificate_declines(tmp_path):
    """A batch recovered exactly but not certified (partial) counts for Acc, not for certified."""
    rows = _rows()[2:4]  # spear-dictionary, both ok and exact
    rows[1]["status"] = "partial"
    t = fig.data(pd.DataFrame(rows)).iloc[0]
    assert (t["acc"], t["acc_pct"], t["certified"], t["certified_pct"]) == (2, 100.0, 1, 50.0)
