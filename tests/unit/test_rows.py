import json

import pytest

from bench.rows import FIELDS, RowWriter, config_hash, make_row, read_rows


def test_row_has_every_field_and_cleans_non_finite():
    row = make_row(run_id="r", psnr_mean=float("inf"), grad_residual=float("nan"))
    assert set(FIELDS) <= set(row)
    assert row["grad_residual"] is None and row["psnr_mean"] > 1e300
    json.dumps(row, allow_nan=False)


def test_resume_knows_done_batches_and_survives_a_torn_line(tmp_path):
    p = tmp_path / "run.jsonl"
    w = RowWriter(p)
    for b in range(3):
        w.write(make_row(config_hash="h", batch_index=b))
    with open(p, "a") as fh:
        fh.write('{"config_hash": "h", "batch_in')  # crash mid-write
    with pytest.warns(UserWarning, match="torn"):
        w2 = RowWriter(p)
    assert w2.done() == {("h", 0), ("h", 1), ("h", 2)}
    w2.write(make_row(config_hash="h", batch_index=3))
    assert [r["batch_index"] for r in read_rows([p])] == [0, 1, 2, 3]


def test_config_hash_is_stable_and_sensitive():
    a = {"dataset": {"name": "mnist"}, "seed": 0}
    assert config_hash(a) == config_hash({"seed": 0, "dataset": {"name": "mnist"}})
    assert config_hash(a) != config_hash({"dataset": {"name": "mnist"}, "seed": 1})
