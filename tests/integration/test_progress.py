"""The runner's progress bar: shown on a terminal, silent when stderr is not one (logs, joblib)."""
from __future__ import annotations

import io
import sys

from hydra import compose, initialize_config_dir

from bench.run.runner import Runner
from tests.integration.test_sweeps import CONF


class _FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def _runner(seed: int) -> Runner:
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=["name=progress_test", "dataset=mnist", "batch_size=2",
                                           "n_batches=2", "model.width=32", "model.depth=2", "attack.max_proposals=20000",
                                           f"seed={seed}", "save_images=0", "metrics.lpips=false"])
    return Runner(cfg)


def test_progress_bar_quiet_without_tty(tmp_results, capsys):
    assert not sys.stderr.isatty()  # pytest captures stderr: not a terminal
    path = _runner(seed=0).run()
    err = capsys.readouterr().err
    assert path.exists() and len(path.read_text().splitlines()) == 2
    assert "mnist/spear" not in err and "batch/s" not in err and "it/s" not in err


def test_progress_bar_shown_on_a_terminal(tmp_results, monkeypatch):
    tty = _FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    _runner(seed=1).run()
    out = tty.getvalue()
    assert "mnist/spear" in out and "2/2" in out  # batches done of total, with rate and ETA
    assert "psnr=" in out
