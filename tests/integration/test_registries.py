"""Config groups are the registries: every attack and defense is a yaml entry with a ``_target_``;
an attack's row label is its yaml's ``name``, one per variant; a defense's knobs are its update
function's keyword arguments."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from bench.client import DEFENSES, client_update, make_defense
from bench.run.models import fcnn

CONF = Path(__file__).resolve().parents[2] / "conf"
ATTACKS = sorted(p.stem for p in (CONF / "attack").glob("*.yaml"))


def _compose(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_every_attack_variant_has_its_own_row_label():
    labels = {}
    for stem in ATTACKS:
        cfg = _compose(f"attack={stem}")
        assert cfg.attack.get("name"), f"conf/attack/{stem}.yaml has no `name:` (the row label)"
        assert instantiate(cfg.attack).name == cfg.attack.name  # what rows and run files are called
        labels[stem] = cfg.attack.name
    assert len(set(labels.values())) == len(labels), labels
    assert labels["spear"] == "spear" and labels["spear_uniform"] == "spear-uniform"


@pytest.mark.parametrize("experiment", ["fig_sampling", "fig_failure_width", "fig_two_stage"])
def test_experiments_that_sample_submatrices_say_so(experiment):
    cfg = _compose(f"experiment={experiment}")
    assert cfg.attack.search == "sampling" and cfg.attack.name == "spear-uniform"


def test_every_defense_is_an_entry_with_an_update_function():
    assert {"none", "dp_sgd", "fedavg", "aggregate", "prune", "quantize"} <= set(DEFENSES)
    for name in DEFENSES:
        node = _compose(f"defense={name}").defense
        assert node.name == name and node._target_.startswith("bench.client.updates.")
        update, row = make_defense(node)
        assert callable(update) and "defense__target_" not in row and "defense_name" not in row


def test_a_defense_knob_that_does_not_exist_is_named():
    node = _compose("defense=dp_sgd", "+defense.clipp=1.0").defense  # `+`: past hydra's own key check
    with pytest.raises(ValueError, match=r"defense\.clipp is not a knob of defense 'dp_sgd'.*clip"):
        make_defense(node)


def test_a_dict_naming_a_defense_is_its_group_entry():
    torch.manual_seed(0)
    model = fcnn((1, 4, 4), 3, width=8, depth=2).double()
    x, y = torch.randn(4, 1, 4, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0])
    by_name = client_update({"name": "quantize", "bits": 4}, model, x, y)
    composed = client_update(_compose("defense=quantize", "defense.bits=4").defense, model, x, y)
    assert by_name.row == composed.row and by_name.update_meta == {"quantize_bits": 4.0}
    assert all(torch.equal(by_name.gradients[n], composed.gradients[n]) for n in composed.gradients)
