"""Tables never merge rows of different settings into one line."""
from __future__ import annotations

import pytest

from bench.record.rows import RowWriter, make_row
from bench.tables import summarise, write_table


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
    """Issue 9.3: peak memory per batch is in every row; Table 1 shows its maximum."""
    _write(tmp_path, "mem", 1, peak_mem_mb=1234.0)
    _write(tmp_path, "mem2", 1, peak_mem_mb=4321.0, seed=1)  # same setting, another seed: one line
    md = write_table(tmp_path, "table1", "quick").read_text()
    header = next(ln for ln in md.splitlines() if ln.startswith("| attack |"))
    (line,) = [ln for ln in md.splitlines() if ln.startswith("| spear | CIFAR-10 |")]
    col = header.split("|").index(" peak mem MB ")
    assert line.split("|")[col].strip() == "4321.0" and "| 2 | 0 | 8 |" in line
