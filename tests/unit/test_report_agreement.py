"""Tables, figures and the HTML page agree on Acc and certified (bench/report/columns.py).

The same five SPEAR batches go into several experiments: ok and exact, partial and exact (the stall
rule), failed but exact (the certificate declined a batch it had recovered), partial and not exact,
failed and not exact. Acc counts the exact ones whatever the status (3/5 = 60%); certified counts
status ok (1/5 = 20%). Counting partial batches as accurate only when exact (40%) or requiring
status ok (20%) -- the rules the old reports used -- both fail here.
"""
from __future__ import annotations

import json
from html.parser import HTMLParser

import pandas as pd
import pytest

from bench.report.__main__ import main
from bench.report.figures.grids import attack_order
from bench.record.rows import RowWriter, make_row

BATCHES = [("ok", 1.0), ("partial", 1.0), ("failed", 1.0), ("partial", 0.5), ("failed", 0.0)]
ACC, CERT = 60.0, 20.0


def _write(results, experiment, attack="spear", **kw):
    w = RowWriter(results / "raw" / experiment / f"{experiment}-{attack}.jsonl")
    for i, (status, exact) in enumerate(BATCHES):
        w.write(make_row(run_id=f"{experiment}-{attack}", experiment=experiment, profile="quick", batch_index=i,
                         seed=0, config_hash=f"{experiment}-{attack}", setting_hash="s", dataset="cifar10",
                         attack=attack, status=status, exact_fraction=exact, psnr_mean=100.0 * exact + 20,
                         exact_psnr_db=80.0, psnr_cap_db=300.0, time_attack_s=1.0, batch_size=4, width=200,
                         depth=6, model="fcnn", dtype="float64", defense="none", data_source="stand-in:pictures",
                         model_state="untrained", sample_ids=[f"x{i}"], image_shape=[3, 32, 32], device="cpu",
                         git_sha="0123456789abcdef", git_dirty=False, timestamp_utc="2025-01-01T00:00:00+00:00",
                         machine="testhost (x86_64, 2 CPUs)", error_msg=None if status == "ok" else "reason", **kw))


class _Tables(HTMLParser):
    """Every <table data-table=...> of the page: header and rows of cell texts."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._name = self._row = self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and "data-table" in a:
            self._name = a["data-table"]
            self.tables[self._name] = []
        elif tag == "tr" and self._name:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._name].append(self._row)
            self._row = None
        elif tag == "table":
            self._name = None


def _md_column(md: str, header: str, first_cell: str) -> list[str]:
    """A column of the first markdown table in ``md``, on the lines whose first cell is ``first_cell``."""
    lines = md.split("\n\n")[1].splitlines()
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]
    return [r[head.index(header)] for r in rows if r[0] == first_cell]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    results = tmp_path_factory.mktemp("agree") / "results"
    _write(results, "table1")
    _write(results, "table1", attack="geiping")  # no certificate: its certified cell is –
    _write(results, "fig_two_stage", diag_second_stage=1, diag_stage2_swaps=0)
    _write(results, "fig_failure_width")
    _write(results, "large_batch")
    _write(results, "dp", defense_noise_multiplier=0.0, dp_epsilon=1e308)
    assert main(["--results", str(results)]) == 0
    page = _Tables()
    page.feed((results / "index.html").read_text(encoding="utf-8"))
    return results, page.tables


def test_tables_state_acc_and_certified(report):
    results, _ = report
    md = (results / "tables" / "table1.md").read_text()
    assert _md_column(md, "Acc %", "spear") == ["60.0"] and _md_column(md, "certified %", "spear") == ["20.0"]
    assert _md_column(md, "Acc %", "geiping") == ["60.0"] and _md_column(md, "certified %", "geiping") == ["–"]
    assert "whatever the attack's status" in md
    csv = pd.read_csv(results / "tables" / "table1.csv").set_index("attack")
    assert csv.loc["spear", "Acc %"] == ACC and csv.loc["spear", "certified %"] == CERT
    dp = (results / "tables" / "dp.md").read_text()
    assert _md_column(dp, "Acc %", "spear") == ["60.0"] and _md_column(dp, "certified %", "spear") == ["20.0"]
    lb = (results / "tables" / "large_batch.md").read_text()
    assert _md_column(lb, "Acc", "spear") == ["3"] and _md_column(lb, "certified", "spear") == ["1"]
    assert _md_column(lb, "Acc %", "spear") == ["60"] and _md_column(lb, "certified %", "spear") == ["20"]


def test_figures_plot_the_same_acc_and_certified(report):
    results, _ = report
    figs = results / "figures"
    two = pd.read_csv(figs / "fig_two_stage.csv").iloc[0]
    assert (two["accuracy_pct"], two["certified_pct"]) == (ACC, CERT)
    fw = pd.read_csv(figs / "fig_failure_width.csv").iloc[0]
    assert fw["p_fail"] == pytest.approx(1 - ACC / 100) and fw["p_uncertified"] == pytest.approx(1 - CERT / 100)
    lb = pd.read_csv(figs / "fig_large_batch.csv").iloc[0]
    assert (lb["acc_pct"], lb["certified_pct"]) == (ACC, CERT)
    dp = pd.read_csv(figs / "fig_dp.csv").iloc[0]
    assert (dp["acc_pct"], dp["certified_pct"]) == (ACC, CERT)


def test_page_shows_the_tables_cells(report):
    results, tables = report
    for name, first in (("table1", "spear"), ("dp", "spear"), ("large_batch", "spear")):
        head, *rows = tables[name]
        (row,) = [r for r in rows if r[0] == first]
        md = (results / "tables" / f"{name}.md").read_text()
        for col in ("Acc %", "certified %"):
            assert row[head.index(col)] == _md_column(md, col, first)[0], (name, col)
    manifest = json.loads((results / "report" / "table1.json").read_text())
    assert manifest["provenance"]["machine"] == ["testhost (x86_64, 2 CPUs)"]
    assert manifest["provenance"]["commit"] == ["0123456789"]
    page = (results / "index.html").read_text()
    assert "testhost (x86_64, 2 CPUs)" in page and "0123456789" in page and "cpu" in page


def test_grid_rows_put_the_paper_order_first_and_the_truth_last():
    assert attack_order(["geiping", "zeta", "spear"], "table1") == ["spear", "geiping", "zeta"]
    assert attack_order(["spear+fi+geiping", "geiping", "cpa+fi+geiping"], "cnn") == [
        "geiping", "cpa+fi+geiping", "spear+fi+geiping"]
