"""Issue 12: no stale resume, every bad input a named error or a failed row.

In-process runs (hydra compose + Runner) of tiny settings: FCNN width 32, B=2, SPEAR, no LPIPS.
"""
from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

import bench.run.runner as runner_mod
from bench.run.config_check import ConfigError, NothingToDo
from bench.record.rows import read_rows
from bench.run.runner import Runner

CONF = str(Path(__file__).resolve().parents[2] / "conf")
FAST = ["name=rel", "batch_size=2", "n_batches=2", "attack.max_proposals=20000", "attack.progress=false",
        "save_images=0", "metrics.lpips=false"]
SMALL_FCNN = ["model.width=32", "model.depth=2"]


def _cfg(*overrides):
    model = [] if any(o.startswith("model=") for o in overrides) else SMALL_FCNN
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=[*FAST, *model, *overrides])


def _jpegs(folder: Path, n_per_class: dict[str, int], side: int = 64, seed: int = 0) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for cls, n in n_per_class.items():
        d = folder / cls / "images"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            p = d / f"{cls}_{i}.JPEG"
            Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(p, quality=90)
            out.append(p)
    return out


def _computed(runner: Runner, monkeypatch) -> list[int]:
    """Run and return the batch indices the runner actually computed."""
    done: list[int] = []
    orig = runner.run_batch

    def spy(b):
        done.append(b)
        return orig(b)

    monkeypatch.setattr(runner, "run_batch", spy)
    runner.run()
    return done


# ------------------------------------------------------------------ 3. start-up validation
@pytest.mark.parametrize("override, key", [
    ("dtype=float16", "dtype"), ("batch_size=0", "batch_size"), ("seed=-1", "seed"),
    ("threat.loss=hinge", "threat.loss"), ("time_budget_s=0", "time_budget_s"),
    ("n_batches=-1", "n_batches"),
])
def test_bad_config_values_fail_at_start_naming_the_key(tmp_results, override, key):
    with pytest.raises(ConfigError) as info:
        Runner(_cfg(override))
    msg = str(info.value)
    assert msg.startswith(key + "=")
    if key == "dtype":
        assert "float32" in msg and "float64" in msg
    if key == "threat.loss":
        assert "cross_entropy" in msg


def test_n_batches_zero_is_nothing_to_do_and_exits_non_zero(tmp_results, capsys):
    from bench.run import main

    with pytest.raises(NothingToDo, match="nothing to do"):
        Runner(_cfg("n_batches=0"))
    with pytest.raises(SystemExit) as info:
        main.__wrapped__(_cfg("n_batches=0"))
    assert info.value.code != 0
    err = capsys.readouterr().err
    assert "nothing to do" in err and "rows:" not in err
    assert not (tmp_results / "raw").exists()


def test_every_attack_gets_a_finite_default_time_budget():
    cfg = _cfg()
    assert cfg.time_budget_s is not None and cfg.time_budget_s > 0


# ------------------------------------------------------------------ 2. resume keys
def test_resume_after_data_source_change_recomputes_every_batch(tmp_results, tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    args = ("dataset=tiny_imagenet", f"paths.data_root={root}")
    first = Runner(_cfg(*args))
    assert first.source.data_source.startswith("stand-in") and _computed(first, monkeypatch) == [0, 1]
    assert _computed(Runner(_cfg(*args)), monkeypatch) == []          # nothing changed: nothing computed
    _jpegs(root / "tiny-imagenet-200" / "train", {"n01": 3, "n02": 3})  # `make data`
    second = Runner(_cfg(*args))
    assert second.source.data_source == "real" and second.path == first.path
    assert _computed(second, monkeypatch) == [0, 1]
    other = tmp_path / "other"                                         # another real root
    _jpegs(other / "tiny-imagenet-200" / "train", {"n01": 3, "n02": 3}, seed=1)
    assert _computed(Runner(_cfg("dataset=tiny_imagenet", f"paths.data_root={other}")), monkeypatch) == [0, 1]
    # back to the first root: its rows are no longer the newest of their batches, so they are redone
    assert _computed(Runner(_cfg(*args)), monkeypatch) == [0, 1]
    assert _computed(Runner(_cfg(*args)), monkeypatch) == []


def test_resume_after_data_changed_in_place_recomputes_exactly_the_affected_batches(tmp_results, tmp_path,
                                                                                    monkeypatch):
    root = tmp_path / "data"
    files = _jpegs(root / "tiny-imagenet-200" / "train", {"n01": 4, "n02": 4})
    args = ("dataset=tiny_imagenet", f"paths.data_root={root}", "n_batches=3")
    r = Runner(_cfg(*args))
    assert _computed(r, monkeypatch) == [0, 1, 2]
    rows = list(read_rows([r.path]))
    in_batch = {row["batch_index"]: set(row["sample_ids"]) for row in rows}
    train = root / "tiny-imagenet-200" / "train"
    rel = sorted(in_batch[0])[0]  # a file of batch 0, edited in place
    assert (train / rel) in files
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 200, dtype=np.uint8)).save(train / rel, quality=90)
    affected = [b for b in range(3) if rel in in_batch[b]]
    assert 0 in affected
    assert _computed(Runner(_cfg(*args)), monkeypatch) == affected
    assert _computed(Runner(_cfg(*args)), monkeypatch) == []


def _cnn_weights(path: Path, seed: int) -> None:
    from bench.run.models import small_cnn

    torch.manual_seed(seed)
    torch.save(small_cnn((1, 28, 28), 10, channels=(4, 8), hidden=32).state_dict(), path)


def test_resume_after_weights_change_recomputes(tmp_results, tmp_path, monkeypatch):
    w = tmp_path / "w.pt"
    _cnn_weights(w, 0)
    args = ("dataset=mnist", "model=small_cnn", "model.channels=[4,8]", "model.hidden=32", f"model.weights={w}",
            "n_batches=1")
    r = Runner(_cfg(*args))
    assert _computed(r, monkeypatch) == [0]
    assert _computed(Runner(_cfg(*args)), monkeypatch) == []
    _cnn_weights(w, 1)  # same path, new content
    r2 = Runner(_cfg(*args))
    assert r2.model_state != r.model_state and _computed(r2, monkeypatch) == [0]
    states = [row["model_state"] for row in read_rows([r.path])]
    assert len(states) == 2 and states[0] != states[1]


def test_error_rows_are_retried_on_resume_unless_kept(tmp_results, monkeypatch):
    r = Runner(_cfg("dataset=mnist"))
    monkeypatch.setattr(r.attack, "reconstruct", lambda *a, **k: 1 / 0)
    assert _computed(r, monkeypatch) == [0, 1]
    assert {row["status"] for row in read_rows([r.path])} == {"error"}
    assert _computed(Runner(_cfg("dataset=mnist", "retry_errors=false")), monkeypatch) == []
    again = Runner(_cfg("dataset=mnist"))
    assert _computed(again, monkeypatch) == [0, 1]
    assert again.statuses() == ["ok", "ok"]


# ------------------------------------------------------------------ 4. bad image files
@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_bad_image_is_an_error_row_naming_the_file_and_the_run_goes_on(tmp_results, tmp_path, damage):
    train = tmp_path / "data" / "tiny-imagenet-200" / "train"
    files = _jpegs(train, {"n01": 1, "n02": 2, "n03": 2})
    bad = files[0]
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"")
    r = Runner(_cfg("dataset=tiny_imagenet", f"paths.data_root={tmp_path / 'data'}", "n_batches=6"))
    r.run()
    rows = list(read_rows([r.path]))
    assert sorted(row["batch_index"] for row in rows) == list(range(6))
    errors = [row for row in rows if row["status"] == "error"]
    assert errors and len(errors) < len(rows)
    assert all(str(bad) in row["error_msg"] for row in errors)
    assert all(any("n01_0" in s for s in row["sample_ids"]) for row in errors)


def test_a_run_whose_every_batch_is_an_error_exits_non_zero(tmp_results, tmp_path, capsys):
    from bench.run import main

    train = tmp_path / "data" / "tiny-imagenet-200" / "train"
    for p in _jpegs(train, {"n01": 1, "n02": 1}):
        p.write_bytes(b"")
    with pytest.raises(SystemExit) as info:
        main.__wrapped__(_cfg("dataset=tiny_imagenet", f"paths.data_root={tmp_path / 'data'}", "n_batches=1"))
    assert info.value.code == 1
    assert "every batch" in capsys.readouterr().err


def test_ctrl_c_prints_how_to_resume_not_a_traceback(tmp_results, monkeypatch, capsys):
    from bench.run import main

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Runner, "run", interrupted)
    with pytest.raises(SystemExit) as info:
        main.__wrapped__(_cfg("dataset=mnist"))
    assert info.value.code == 130
    err = capsys.readouterr().err
    assert "interrupted; rerun the same command to resume" in err and "Traceback" not in err


# ------------------------------------------------------------------ 6. concurrent runs
def test_two_concurrent_runs_of_one_setting_compute_each_batch_once(tmp_results, monkeypatch, capsys):
    a, b = Runner(_cfg("dataset=mnist", "n_batches=3")), Runner(_cfg("dataset=mnist", "n_batches=3"))
    assert a.path == b.path
    started, computed = threading.Event(), {"a": [], "b": []}
    for name, r in (("a", a), ("b", b)):
        orig = r.run_batch

        def spy(i, _orig=orig, _name=name):
            computed[_name].append(i)
            started.set()
            return _orig(i)

        monkeypatch.setattr(r, "run_batch", spy)
    t = threading.Thread(target=a.run)
    t.start()
    assert started.wait(60)
    b.run()  # must wait for a, then find every batch written
    t.join(120)
    rows = list(read_rows([a.path]))
    assert sorted(r["batch_index"] for r in rows) == [0, 1, 2]
    assert computed == {"a": [0, 1, 2], "b": []}
    assert "another run of this setting holds" in capsys.readouterr().err


# ------------------------------------------------------------------ 7. malformed gradients, runner
MALFORMED = {
    "transposed": lambda g: g.T.contiguous(),
    "truncated": lambda g: g[:, :-5],
    "4d": lambda g: g.reshape(g.shape[0], 1, 28, 28),
    "short_bias": None,
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_gradient_is_a_not_applicable_row_naming_both_shapes(tmp_results, monkeypatch, case):
    real = runner_mod.fedsgd_gradient

    def client(model, x, y, loss_fn):
        grads, loss = real(model, x, y, loss_fn)
        if case == "short_bias":
            grads["1.bias"] = grads["1.bias"][:-2]
        else:
            grads["1.weight"] = MALFORMED[case](grads["1.weight"])
        return grads, loss

    monkeypatch.setattr(runner_mod, "fedsgd_gradient", client)
    r = Runner(_cfg("dataset=mnist", "n_batches=1"))
    r.run()
    (row,) = read_rows([r.path])
    assert row["status"] == "not_applicable", row["error_msg"]
    key = "1.bias" if case == "short_bias" else "1.weight"
    expected = "(32,)" if case == "short_bias" else "(32, 784)"
    assert key in row["error_msg"] and expected in row["error_msg"]
    assert "Traceback" not in row["error_msg"]


# ------------------------------------------------------------------ 8. smaller
def test_attacks_see_a_model_in_eval_mode(tmp_results, monkeypatch):
    from attacks.base import AttackNotApplicable

    r = Runner(_cfg("dataset=mnist", "n_batches=1"))
    seen = []

    def spy(obs, **kw):
        seen.append(obs.model.training)
        raise AttackNotApplicable("spy")

    monkeypatch.setattr(r.attack, "reconstruct", spy)
    r.run()
    assert seen == [False] and not r._model(0).training


def test_thumbnails_are_found_from_another_working_directory(tmp_results, tmp_path, monkeypatch):
    from bench.report.figures.grids import artifact_path, grid_for_run

    r = Runner(_cfg("dataset=mnist", "n_batches=1", "save_images=1"))
    r.run()
    (row,) = read_rows([r.path])
    assert row["artifact"] and not Path(row["artifact"]).is_absolute()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert artifact_path(row, r.path.parent) is not None
    assert grid_for_run(r.path, tmp_path / "figs") is not None


def test_attacks_get_the_weights_without_a_copy_and_may_not_write_into_them(tmp_results, monkeypatch):
    """Issue 9 (memory): the server's view shares the weight storage (a 311 M-parameter layer is
    not held twice); an attack that writes into it is caught and its batch is an error row."""
    r = Runner(_cfg("dataset=mnist", "n_batches=1"))
    model = r._model(0)
    view = runner_mod.server_view(model)
    for (n, p), (_, q) in zip(model.named_parameters(), view.named_parameters()):
        assert p.data_ptr() == q.data_ptr() and p is not q, n
    view.train()
    assert not model.training  # module state is the view's own

    def quiet_vandal(obs, **kw):
        with torch.no_grad():
            next(obs.model.parameters()).add_(1.0)
        from attacks.base import Reconstruction
        return Reconstruction(torch.zeros(0, *r.spec.shape), None, "failed", {})

    r2 = Runner(_cfg("dataset=mnist", "n_batches=1", "seed=1"))
    monkeypatch.setattr(r2.attack, "reconstruct", quiet_vandal)
    r2.run()
    row = list(read_rows([r2.path]))[-1]
    assert row["status"] == "error" and "wrote into the model's weights" in row["error_msg"]
