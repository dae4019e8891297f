"""The perf-spear benchmark's command line (speed itself is measured by running it, never here)."""
import json

import pytest

from bench.perf.spear import main


def test_knobs_pass_through_and_the_json_records_the_run(tmp_path, capsys):
    out = tmp_path / "perf.json"
    assert main(["--batch-sizes", "4", "--batches", "1", "--threads", "1", "--set", "templates=false",
                 "--set", "l1_starts=64", "--json", str(out)]) == 0
    assert "templates=False, l1_starts=64" in capsys.readouterr().out
    rec = json.loads(out.read_text())
    assert rec["summary"][0]["b"] == 4 and rec["summary"][0]["exact"] == 1


def test_an_unknown_knob_is_refused_with_the_list():
    with pytest.raises(SystemExit):
        main(["--set", "no_such_knob=1"])
