"""Architecture rules that must not rot: attacks never import bench, never see ground truth."""
import ast
import dataclasses
from pathlib import Path

from attacks.base import Observation

REPO = Path(__file__).resolve().parents[2]


def test_attacks_never_import_bench():
    offenders = []
    for path in (REPO / "attacks").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n == "bench" or n.startswith("bench.")]
    assert not offenders, offenders


def test_observation_carries_no_ground_truth():
    fields = {f.name for f in dataclasses.fields(Observation)}
    assert fields == {"model", "gradients", "loss_fn", "data_spec", "batch_size", "labels",
                      "client_steps", "update_meta"}
