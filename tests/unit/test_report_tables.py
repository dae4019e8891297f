"""Tables (bench/report/tables) never merge rows of different settings into one line."""
from __future__ import annotations

import pytest

from bench.report.build import build, table_path
from bench.report.tables.summary import summarise
from bench.record.rows import RowWriter, make_row


def write_table(results, experiment, profile):
    return table_path(results, build(results, experiment, profile, quiet=True))


def _write(results, name, n, *, batch_size=8, seed=0, setting_hash="s8", run_id=None, **kw):
    w = RowWriter(results / "raw" / "table1" / f"{name}.jsonl")
    setting = dict(width=200, depth=6, dtype="float64", model="fcnn", defense="none",
                   data_source="stand-in:pictures", model_state="untrained")
    setting.update(kw)
    for b in range(n):
        w.write(make_row(run_id=run_id or name, experiment="table1", profile="quick", batch_index=b, seed=seed,
                         config_hash=f"{name}-c", setting_hash=setting_hash, dataset="cifar10", attack="spear",
                         status="ok", psnr_mean=100.0 + batch_size, exact_fraction=1.0, exact_psnr_db=80.0,
                         psnr_cap_db=300.0, time_attack_s=1.0, batch_size=batch_size, sample_ids=["a"],
                         image_shape=[3, 32, 32], device="cpu", **setting))


def test_two_batch_sizes_in_one_folder_give_two_lines_naming_the_key(tmp_path):
    _write(tmp_path, "default", 8)
    _write(tmp_path, "b12", 2, batch_size=12, seed=1, setting_hash="s12")
    md = write_table(tmp_path, "table1", "quick").read_text()
    lines = [ln for ln in md.splitlines() if ln.startswith("| spear | CIFAR-10 |")]
    assert len(lines) == 2
    assert any("| B=8 |" in ln and "| 8 | 0 | 8 |" in ln for ln in lines), lines
    assert any("| B=12 |" in ln and "| 2 | 0 | 12 |" in ln for ln in lines), lines
    assert "| setting |" in md


def test_other_seeds_of_one_setting_share_a_line(tmp_path):
    _write(tmp_path, "s0", 3, seed=0)
    _write(tmp_path, "s1", 2, seed=1)
    md = write_table(tmp_path, "table1", "quick").read_text()
    (line,) = [ln for ln in md.splitlines() if ln.startswith("| spear | CIFAR-10 |")]
    assert "| 5 | 0 | 8 |" in line and "setting" not in md.splitlines()[2]


@pytest.mark.parametrize("key, value, label", [("dtype", "float32", "dtype=float32"),
                                               ("data_source", "real", "data=real"),
                                               ("width", 400, "width=400")])
def test_any_setting_key_splits(tmp_path, key, value, label):
    _write(tmp_path, "a", 2)
    _write(tmp_path, "b", 2, setting_hash="other", **{key: value})
    import pandas as pd

    from bench.record.rows import read_rows

    res = summarise(pd.DataFrame(list(read_rows(sorted((tmp_path / "raw" / "table1").glob("*.jsonl"))))), "table1")
    assert len(res) == 2 and label in set(res["setting"])


def test_hidden_knob_difference_is_split_by_config_hash(tmp_path):
    _write(tmp_path, "a", 2, setting_hash="aaaaaaaaaaaa")
    _write(tmp_path, "b", 2, setting_hash="bbbbbbbbbbbb")
    md = write_table(tmp_path, "table1", "quick").read_text()
    assert "config=aaaaaaaa" in md and "config=bbbbbbbb" in md


def test_newest_row_of_a_batch_wins_within_a_run(tmp_path):
    _write(tmp_path, "r", 2, data_source="stand-in:pictures")
    _write(tmp_path, "r", 2, data_source="real", setting_hash="real")  # same file: recomputed on real data
    md = write_table(tmp_path, "table1", "quick").read_text()
    (line,) = [ln for ln in md.splitlines() if ln.startswith("| spear | CIFAR-10 |")]
    assert "| real |" in line and "| 2 | 0 | 8 |" in line


def test_table1_shows_the_peak_memory_of_the_batches(tmp_path):
    """Peak memory per batch is in every row; Table 1 shows its maximum."""
    _write(tmp_path, "mem", 1, peak_mem_mb=1234.0)
    _write(tmp_path, "mem2", 1, peak_mem_mb=4321.0, seed=1)  # same setting, another seed: one line
    md = write_table(tmp_path, "table1", "quick").read_text()
    header = next(ln for ln in md.splitlines() if ln.startswith("| attack |"))
    (line,) = [ln for ln in md.splitlines() if ln.startswith("| spear | CIFAR-10 |")]
    col = header.split("|").index(" peak mem MB ")
    assert line.split("|")[col].strip() == "4321.0" and "| 2 | 0 | 8 |" in line


def test_main_comparison_lists_every_paper_method_and_fills_it_from_matching_rows(tmp_path):
    """Every method of results/paper.yaml's comparison gets a line; CI-Net's two entries select rows
    by attack and the row field ``activation``."""
    w = RowWriter(tmp_path / "raw" / "table1" / "cinet.jsonl")
    for b in range(2):
        w.write(make_row(run_id="cinet", experiment="table1", profile="quick", batch_index=b, seed=0,
                         config_hash="cinet-c", setting_hash="cinet", dataset="imagenet224", attack="ci_net",
                         activation="sigmoid", status="ok", psnr_mean=30.0 + b, exact_fraction=0.0,
                         exact_psnr_db=80.0, psnr_cap_db=300.0, time_attack_s=5.0, batch_size=8, sample_ids=["a"],
                         image_shape=[3, 224, 224], data_source="stand-in:pictures", device="cpu"))
    md = write_table(tmp_path, "table1", "quick").read_text()
    comp = md.split("#### main comparison", 1)[1]
    lines = {ln.split("|")[1].strip(): ln for ln in comp.splitlines() if ln.startswith("| ") and "---" not in ln}
    from bench.report.tables.paper import paper_numbers

    assert set(paper_numbers("table1")["comparison"]) <= set(lines)
    assert "| 30.5 | 38.0 |" in lines["ci_net_sigmoid"] and "| ran |" in lines["ci_net_sigmoid"]
    assert "| 0.0 | – |" in lines["ci_net_sigmoid"]  # Acc 0 %, no certificate
    assert "| not run |" in lines["ci_net_relu"] and "| not run |" in lines["spear"]


def test_report_without_rows_says_what_to_run(tmp_path, capsys):
    from bench.report.__main__ import main

    assert main(["--results", str(tmp_path / "results")]) == 2
    assert "make reproduce-table1" in capsys.readouterr().err
    assert "No experiment has rows yet" in (tmp_path / "results" / "index.html").read_text()
    with pytest.raises(ValueError, match="profiles there: quick"):
        _write(tmp_path, "a", 1)
        build(tmp_path, "table1", "paper")


def test_the_model_activation_names_its_setting(tmp_path):
    _write(tmp_path, "relu", 1, setting_hash="r", activation="relu")
    _write(tmp_path, "sig", 1, setting_hash="s", activation="sigmoid")
    md = write_table(tmp_path, "table1", "quick").read_text()
    assert "| activation=relu |" in md and "| activation=sigmoid |" in md
