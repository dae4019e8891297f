"""One declaration per knob (bench/run/config_schema.py), checked at start-up (bench/run/config_check.py).

* every shipped config -- each option of each config group here, each experiment with each of
  its profiles in tests/integration/test_compose.py -- passes, and a knob added to a yaml without
  a schema entry fails (the check refuses undeclared keys), so the schema cannot fall behind;
* property walk: every numeric knob of every config group set to 0, -1 and an absurd value is
  refused with a ConfigError naming the key and the value -- or, for 0, accepted only where the
  schema documents what 0 means -- before any data, model or attack is touched.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bench.client import LOSSES
from bench.run.config_check import ConfigError, knobs, validate_config
from bench.run.config_schema import ATTACKS, DEFENSES, MODELS, ROOT

CONF = Path(__file__).resolve().parents[2] / "conf"
GROUPS = ("dataset", "model", "attack", "threat", "defense")
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]
ABSURD_INT, ABSURD_FLOAT = 10**15, 1e15


def _compose(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.fixture(scope="module")
def configs():
    """The root config with each group option (the root keys come with every one of them)."""
    return {opt: _compose(f"{opt[0]}={opt[1]}") for opt in OPTIONS}


def test_every_group_option_validates(configs):
    for (group, option), cfg in configs.items():
        validate_config(cfg, losses=LOSSES)


def _numeric_leaves(cfg):
    """(key, knob, kind) of every int/float knob, lists of them included, from the walk."""
    return [(k, knob) for k, _, knob in knobs(cfg, LOSSES) if knob.kind in ("int", "float", "ints", "floats")]


def _set(cfg, key: str, value):
    c = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    OmegaConf.update(c, key, value, force_add=True)
    return c


def test_every_numeric_knob_refuses_zero_minus_one_and_absurd_values(configs):
    """0, -1, 10^15: a ConfigError naming the key and the value, or (0 only) a documented meaning."""
    seen = set()
    for opt, cfg in configs.items():
        for key, knob in _numeric_leaves(cfg):
            if key in seen:
                continue
            seen.add(key)
            listy = knob.kind in ("ints", "floats")
            absurd = ABSURD_INT if knob.kind in ("int", "ints") else ABSURD_FLOAT
            for v in (0, -1, absurd):
                bad = _set(cfg, key, [v] if listy else v)
                try:
                    validate_config(bad, losses=LOSSES)
                except ConfigError as exc:
                    msg = str(exc)
                    assert msg.startswith(f"{key}="), f"{key}={v}: message does not name the key: {msg}"
                    assert repr([v] if listy else v) in msg or str(v) in msg, msg
                    if v != 0 or knob.zero is None:
                        continue
                    assert key == "n_batches", f"{key}=0 is documented ({knob.zero}) but refused: {msg}"
                else:
                    assert v == 0 and knob.zero, f"{key}={v} was accepted without a documented meaning"
    # the walk reached every group's numeric knobs
    assert {"batch_size", "defense.noise_multiplier", "defense.clip", "defense.lr", "defense.clients",
            "defense.keep", "defense.bits", "defense.epochs", "model.width", "attack.max_proposals",
            "attack.stage1.max_proposals", "attack.fi.iterations", "attack.refine.max_iterations",
            "dataset.standin.per_picture", "metrics.psnr_cap_db", "time_budget_s"} <= seen


def test_null_is_refused_unless_it_means_something(configs):
    seen = set()
    for opt, cfg in configs.items():
        for key, value, knob in list(knobs(cfg, LOSSES)):
            if value is None or key in seen:
                continue
            seen.add(key)
            try:
                validate_config(_set(cfg, key, None), losses=LOSSES)
            except ConfigError as exc:
                assert knob.null is None and str(exc).startswith(f"{key}=None"), str(exc)
            else:
                assert knob.null is not None, f"{key}=null accepted without a documented meaning"


@pytest.mark.parametrize("override, key", [
    ("+defense.sigma=1", "defense.sigma"),        # a typo is refused, never ignored
    ("+n_batch=3", "n_batch"),
    ("+attack.foo=1", "attack.foo"),
    ("+dataset.standin.crops=2", "dataset.standin.crops"),
])
def test_an_undeclared_key_is_refused_by_name(override, key):
    with pytest.raises(ConfigError) as info:
        validate_config(_compose(override), losses=LOSSES)
    assert str(info.value).startswith(f"{key} is not a knob of")


@pytest.mark.parametrize("override, words", [
    ("device=mps", ["device='mps'", "auto, cpu, cuda"]),
    ("attack.max_proposals=2e7", ["integer", "write 20000000"]),
    ("attack.tau=nan", ["finite"]),
    ("name=../../etc", ["name='../../etc'"]),
    ("metrics.exact_psnr_db=400", ["above metrics.psnr_cap_db"]),
    ("attack._target_=attacks.nope.Nope", ["attack._target_", "bench/run/config_schema.py"]),
])
def test_other_bad_values_are_named(override, words):
    with pytest.raises(ConfigError) as info:
        validate_config(_compose(override), losses=LOSSES)
    assert all(w in str(info.value) for w in words), str(info.value)


def test_every_knob_table_entry_describes_its_range():
    for table in [ROOT, *MODELS.values(), *ATTACKS.values(), *DEFENSES.values()]:
        for key, knob in table.items():
            assert knob.allowed(), key
            if knob.kind in ("int", "float"):
                assert knob.lo is not None and knob.hi is not None, f"{key}: unbounded"
