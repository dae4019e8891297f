"""No impossible parameter becomes a plausible row: bad values stop the run at start-up (exit 2).

Regression tests for the defects of the hostile-input review: DP-SGD and FedAvg with impossible
parameters wrote plausible rows; values that failed every batch (or were silently reinterpreted)
were not checked at start-up; a corrupt weights file failed every batch with a raw IndexError;
the tables crashed on a folder without a valid row (``KeyError: 'config_hash'``); a run with ``retry_errors=false`` told
the user to rerun to retry its errors. The script's own checks are in test_slurm_script.py, the
attacks' own input checks in tests/attacks/test_observation_checks.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from bench.run.config_check import ConfigError
from bench.run.runner import Runner

REPO = Path(__file__).resolve().parents[2]
CONF = str(REPO / "conf")
FAST = ["name=rel", "batch_size=2", "n_batches=1", "attack.max_proposals=20000", "attack.progress=false",
        "save_images=0", "metrics.lpips=false", "dataset=mnist"]


def _cfg(*overrides):
    model = [] if any(o.startswith("model=") for o in overrides) else ["model.width=32", "model.depth=2"]
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=[*FAST, *model, *overrides])


def _exit_code(cfg, capsys) -> tuple[int, str]:
    from bench.run import main

    with pytest.raises(SystemExit) as info:
        main.__wrapped__(cfg)
    return info.value.code, capsys.readouterr().err


# ------------------------------------------------------------------ values checked at start-up
@pytest.mark.parametrize("overrides, key", [
    # DP-SGD and FedAvg: impossible physics that used to write plausible rows
    (("defense=dp_sgd", "defense.noise_multiplier=-0.001"), "defense.noise_multiplier"),
    (("defense=dp_sgd", "defense.clip=-1"), "defense.clip"),
    (("defense=dp_sgd", "defense.clip=0"), "defense.clip"),
    (("defense=fedavg", "defense.lr=-0.01"), "defense.lr"),
    (("defense=fedavg", "defense.lr=0"), "defense.lr"),
    # errors of every batch that did not name the key, or named it per batch only
    (("defense=aggregate", "defense.clients=0"), "defense.clients"),
    (("model.width=0",), "model.width"),
    (("attack.threads=-1",), "attack.threads"),
    (("device=mps",), "device"),
    (("defense=fedavg", "defense.epochs=0"), "defense.epochs"),
    (("defense=prune", "defense.keep=1.5"), "defense.keep"),
    (("defense=quantize", "defense.bits=0"), "defense.bits"),
    # silently reinterpreted before
    (("attack.threads=0",), "attack.threads"),
    (("defense=fedavg", "defense.local_batch=0"), "defense.local_batch"),
    (("attack.max_proposals=-1",), "attack.max_proposals"),
])
def test_impossible_value_stops_the_run_at_start_naming_key_value_and_range(tmp_results, overrides, key):
    with pytest.raises(ConfigError) as info:
        Runner(_cfg(*overrides))
    msg = str(info.value)
    value = overrides[-1].split("=", 1)[1]
    assert msg.startswith(f"{key}=") and value.strip("'") in msg and "allowed" in msg, msg
    assert not (tmp_results / "raw").exists()


def test_negative_noise_is_exit_2_and_no_row(tmp_results, capsys):
    code, err = _exit_code(_cfg("defense=dp_sgd", "defense.noise_multiplier=-0.001"), capsys)
    assert code == 2 and "defense.noise_multiplier=-0.001" in err and "rows:" not in err
    assert not (tmp_results / "raw").exists()


def test_the_command_line_exits_2_naming_the_key(tmp_path):
    env = dict(os.environ, SPEAR_RESULTS=str(tmp_path / "results"), WANDB_MODE="disabled", PYTHONPATH=str(REPO))
    runs = {"defense.noise_multiplier=-0.001": ["experiment=dp", "attack=spear", "n_batches=1",
                                                "defense.noise_multiplier=-0.001"],
            "model.width=0": ["model.width=0", "n_batches=1"]}
    procs = {key: subprocess.Popen([sys.executable, "-m", "bench.run", *args], cwd=tmp_path, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for key, args in runs.items()}
    for key, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, err[-2000:]
        assert key in err and "Traceback" not in err
    assert not (tmp_path / "results").exists()


def test_client_code_refuses_impossible_defense_parameters():
    """Called from Python, DP-SGD and FedAvg refuse what the config check refuses."""
    from bench.client import client_update
    from bench.client.dp import dp_sgd_gradient
    from bench.client.fedavg import update_as_gradient
    from bench.run.models import fcnn

    torch.manual_seed(0)
    model = fcnn((4,), 3, width=5, depth=2).double()
    x, y = torch.randn(3, 4, dtype=torch.float64), torch.tensor([0, 1, 2])
    gen = torch.Generator().manual_seed(0)
    for kw, key in ((dict(clip=-1.0, noise_multiplier=0.0), "defense.clip"),
                    (dict(clip=0.0, noise_multiplier=0.0), "defense.clip"),
                    (dict(clip=1.0, noise_multiplier=-0.001), "defense.noise_multiplier")):
        with pytest.raises(ValueError, match=key):
            dp_sgd_gradient(model, x, y, torch.nn.functional.cross_entropy, generator=gen, **kw)
    for lr in (0.0, -0.01):
        with pytest.raises(ValueError, match="defense.lr"):
            client_update({"name": "fedavg", "lr": lr, "epochs": 1}, model, x, y)
        with pytest.raises(ValueError, match="defense.lr"):
            update_as_gradient({"w": torch.ones(2)}, lr=lr, steps=1)
    with pytest.raises(ValueError, match="defense.clients"):
        client_update({"name": "aggregate", "clients": 0}, model, x, y)
    with pytest.raises(ValueError, match="local_batch"):
        client_update({"name": "fedavg", "lr": 0.1, "local_batch": 0}, model, x, y)


# ------------------------------------------------------------------ the weights file
def _small_cnn(*extra):
    return ("model=small_cnn", "model.channels=[4,8]", "model.hidden=32", *extra)


def _weights(path: Path, damage: str) -> None:
    from bench.run.models import small_cnn

    torch.manual_seed(0)
    good = small_cnn((1, 28, 28), 10, channels=(4, 8), hidden=32).state_dict()
    if damage == "truncated":
        torch.save(good, path)
        path.write_bytes(path.read_bytes()[:300])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 64)
    elif damage == "wrong_shapes":
        torch.save(small_cnn((1, 28, 28), 10, channels=(4, 8), hidden=16).state_dict(), path)
    elif damage == "not_a_state_dict":
        torch.save([1, 2, 3], path)
    elif damage == "nan":
        good["classifier.0.weight"][0, 0] = float("nan")
        torch.save(good, path)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "wrong_shapes", "not_a_state_dict", "nan",
                                    "missing"])
def test_a_bad_weights_file_is_named_with_key_and_path(tmp_path, damage):
    import functools

    from bench.run.models import small_cnn, weights_state

    w = tmp_path / "weights.pt"
    _weights(w, damage)
    factory = functools.partial(small_cnn, channels=(4, 8), hidden=32, weights=str(w))
    with pytest.raises(ConfigError) as info:
        weights_state(str(w), factory, input_shape=(1, 28, 28), num_classes=10)
    msg = str(info.value)
    assert msg.startswith(f"model.weights='{w}'") and str(w) in msg, msg
    if damage == "wrong_shapes":
        assert "classifier.0.weight" in msg and "(16, 392)" in msg and "(32, 392)" in msg


def test_a_corrupt_weights_file_is_exit_2_at_start(tmp_results, tmp_path, capsys):
    """Before: "IndexError: pop from empty list" in every batch's row, naming neither key nor file."""
    w = tmp_path / "weights.pt"
    _weights(w, "truncated")
    code, err = _exit_code(_cfg(*_small_cnn(f"model.weights={w}")), capsys)
    assert code == 2 and f"model.weights='{w}'" in err and "IndexError" not in err
    assert not (tmp_results / "raw").exists()


# ------------------------------------------------------------------ the smaller two
def test_report_without_a_valid_row_exits_2(tmp_path, capsys):
    from bench.report.__main__ import main

    raw = tmp_path / "raw" / "empty"
    raw.mkdir(parents=True)
    (raw / "x.jsonl").write_text('{"foo": 1}\n[1, 2, 3]\nnot json\n')
    with pytest.warns(UserWarning):
        code = main(["--experiment", "empty", "--results", str(tmp_path), "--no-page"])
    assert code == 2
    assert "no result rows" in capsys.readouterr().err


def test_kept_error_rows_do_not_say_rerun_to_retry(tmp_results, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    train = tmp_path / "data" / "tiny-imagenet-200" / "train"
    for cls in ("n01", "n02"):
        (train / cls / "images").mkdir(parents=True)
        p = train / cls / "images" / f"{cls}_0.JPEG"
        Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(p)
        p.write_bytes(b"")  # unreadable: every batch is an error row
    args = ("dataset=tiny_imagenet", f"paths.data_root={tmp_path / 'data'}")
    code, err = _exit_code(_cfg(*args), capsys)
    assert code == 1 and "rerun to retry them" in err
    code, err = _exit_code(_cfg(*args, "retry_errors=false"), capsys)
    assert code == 1 and "every batch" in err
    assert "rerun to retry them" not in err and "retry_errors=false keeps them" in err
