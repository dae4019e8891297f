"""Record decoding, Hungarian matching and the tabular metrics; the tabular table."""
import json

import numpy as np
import pytest
import torch

from bench.report.build import build, table_path
from bench.report.format import markdown
from bench.report.tables.summary import summarise, table
from bench.scoring.tabular import decode, encode, random_guess_discrete_acc, tabular_quality
from datasets import load_source, select_batch


@pytest.fixture(scope="module")
def batch():
    src = load_source("adult", prefer="standin", standin={"n_records": 400, "seed": 0})
    spec = src.info.spec()
    x01, y, _ = src.batch(select_batch(src.labels, 8, seed=0, batch_index=0, balanced=False))
    return spec, spec.normalize(x01.double())


def test_exact_permuted_reconstruction_scores_perfectly(batch):
    spec, x = batch
    perm = torch.tensor([3, 0, 7, 1, 6, 2, 5, 4])
    q = tabular_quality(x[perm], x, spec)
    assert q["discrete_acc"] == 1.0 and q["continuous_mae"] == 0.0 and q["exact_fraction"] == 1.0
    assert q["psnr_mean"] is None and q["records_matched"] == 8
    assert [int(perm[i]) for i in q["rec_for_true"]] == list(range(8))  # rec index -> true record
    json.dumps(q)


def test_known_errors_give_known_scores(batch):
    spec, x = batch
    rec = decode(x, spec)
    rec.discrete[2, 0] = (rec.discrete[2, 0] + 1) % 8          # one wrong workclass
    age = rec.continuous_names.index("age")
    rec.continuous[5, age] += 3                                 # one age off by 3 years
    rec.continuous_raw[5, age] += 3
    q = tabular_quality(encode(rec, spec), x, spec)
    assert q["discrete_acc"] == pytest.approx(1 - 1 / (8 * 8))
    assert q["continuous_mae"] == pytest.approx(3 / (8 * 6))
    assert q["continuous_mae_per_field"]["age"] == pytest.approx(3 / 8)
    assert q["exact_fraction"] == pytest.approx(6 / 8)


def test_rounding_and_clipping_to_the_grid(batch):
    spec, x = batch
    noisy = x.clone()
    c = spec.feature_blocks[0].start  # age, std ~ 21 on the stand-in
    noisy[:, c] += 0.4 / spec.std[c]       # +0.4 years: rounds back
    q = tabular_quality(noisy, x, spec)
    assert q["continuous_mae"] == 0.0 and q["continuous_mae_unrounded"] == pytest.approx(0.4 / 6)
    far = x.clone()
    far[:, c] = 1e6                        # beyond the range: clipped to the field's maximum
    assert decode(far, spec).continuous[:, 0].max() == spec.feature_blocks[0].high


def test_missing_reconstructions_count_as_wrong(batch):
    spec, x = batch
    q = tabular_quality(x[:5], x, spec)
    assert q["discrete_acc"] == pytest.approx(5 / 8) and q["records_matched"] == 5
    assert q["continuous_mae"] == 0.0 and q["rec_for_true"].count(-1) == 3
    empty = tabular_quality(x[:0], x, spec)
    assert empty["discrete_acc"] == 0.0 and empty["continuous_mae"] is None


def test_random_guess_floor(batch):
    spec, _ = batch
    assert random_guess_discrete_acc(spec) == pytest.approx(np.mean([1 / 8, 1 / 16, 1 / 7, 1 / 14, 1 / 6, 1 / 5,
                                                                     1 / 2, 1 / 41]))


def _row(attack, acc, mae, status="ok"):
    return {"schema_version": 1, "attack": attack, "dataset": "adult", "status": status, "image_shape": [105], "psnr_mean": None,
            "lpips_mean": None, "exact_fraction": 1.0 if mae == 0 else 0.0, "time_attack_s": 2.0,
            "data_source": "stand-in:adult-synthetic", "batch_size": 8, "exact_psnr_db": None,
            "psnr_cap_db": None, "discrete_acc": acc, "continuous_mae": mae, "config_hash": attack,
            "batch_index": 0, "profile": "quick", "device": "cpu", "sample_ids": ["synthetic:0"],
            "error_msg": None}


def test_table_has_tabular_columns_beside_the_paper():
    import pandas as pd

    df = pd.DataFrame([_row("spear", 1.0, 0.0), _row("tableak", 0.9, 1000.0)])
    res = summarise(df, "tabular")
    t = res.set_index("attack")
    assert t.loc["spear", "discrete acc %"] == 100 and t.loc["tableak", "continuous MAE"] == 1000
    assert t.loc["tableak", "paper continuous MAE"] == 4922.7 and t.loc["spear", "paper discrete acc %"] == 100
    assert t.loc["spear", "Acc %"] == 100 and t.loc["tableak", "Acc %"] == 0
    md = markdown(table(df, "tabular"))
    assert "| discrete acc % |" in md and "PSNR" not in md and "| tableak | Adult | 90.0 ± 0.0 | 97 |" in md


def test_write_table_for_tabular_rows(tmp_path):
    raw = tmp_path / "raw" / "tabular"
    raw.mkdir(parents=True)
    with open(raw / "rows.jsonl", "w") as fh:
        for r in (_row("spear", 1.0, 0.0), _row("tableak", 0.95, 2000.0)):
            fh.write(json.dumps(r) + "\n")
    md = table_path(tmp_path, build(tmp_path, "tabular", "quick")).read_text()
    assert "4922.7" in md and "synthetic records" in md and "continuous MAE" in md
    csv = (tmp_path / "tables" / "tabular.csv").read_text().splitlines()[0]
    assert "discrete acc %" in csv and "PSNR" not in csv
