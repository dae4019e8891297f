import json

import pytest

from bench.record.rows import FIELDS, RowWriter, config_hash, make_row, read_rows


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


def test_lines_that_are_json_but_not_rows_are_skipped_with_file_and_line(tmp_path):
    p = tmp_path / "run.jsonl"
    w = RowWriter(p)
    w.write(make_row(config_hash="h", batch_index=0, status="ok", psnr_mean=30.0))
    with open(p, "a") as fh:
        fh.write("[1, 2, 3]\n")
        fh.write('{"foo": 1}\n')
        fh.write(json.dumps(make_row(config_hash="h", batch_index=1, psnr_mean="high")) + "\n")
        fh.write(json.dumps(make_row(config_hash="h", batch_index=2, status="done?")) + "\n")
    w.write(make_row(config_hash="h", batch_index=3, status="ok"))
    with pytest.warns(UserWarning) as rec:
        rows = list(read_rows([p]))
    assert [r["batch_index"] for r in rows] == [0, 3]
    msgs = [str(m.message) for m in rec]
    for lineno, what in ((2, "list"), (3, "schema_version"), (4, "psnr_mean"), (5, "status")):
        assert any(m.startswith(f"{p}:{lineno}:") and what in m for m in msgs), (lineno, msgs)
    with pytest.warns(UserWarning):
        assert RowWriter(p).done() == {("h", 0), ("h", 3)}  # resume does not crash on them either


def test_a_complete_last_row_without_newline_is_kept(tmp_path):
    p = tmp_path / "run.jsonl"
    p.write_text(json.dumps(make_row(config_hash="h", batch_index=0)) + "\n"
                 + json.dumps(make_row(config_hash="h", batch_index=1)))  # no final newline
    w = RowWriter(p)
    assert w.done() == {("h", 0), ("h", 1)}
    w.write(make_row(config_hash="h", batch_index=2))
    assert [r["batch_index"] for r in read_rows([p])] == [0, 1, 2]


def test_error_rows_are_retried_unless_asked_to_keep_them(tmp_path):
    p = tmp_path / "run.jsonl"
    w = RowWriter(p)
    w.write(make_row(config_hash="h", batch_index=0, status="ok"))
    w.write(make_row(config_hash="h", batch_index=1, status="error", error_msg="boom"))
    w.write(make_row(config_hash="h", batch_index=2, status="not_applicable"))
    assert w.done() == {("h", 0), ("h", 2)}
    assert w.done(retry_errors=False) == {("h", 0), ("h", 1), ("h", 2)}


def test_lock_says_when_another_run_holds_it(tmp_path):
    import threading

    p = tmp_path / "run.jsonl"
    held = RowWriter(p).lock()
    waited, got = [], threading.Event()

    def second():
        lk = RowWriter(p).lock(on_wait=waited.append)
        got.set()
        lk.release()

    t = threading.Thread(target=second)
    t.start()
    assert not got.wait(0.5)  # blocked while the first run holds the lock
    held.release()
    t.join(10)
    assert got.is_set() and waited == [p.with_name("run.jsonl.lock")]
