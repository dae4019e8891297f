import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def tmp_results(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEAR_RESULTS", str(tmp_path / "results"))
    return tmp_path / "results"
