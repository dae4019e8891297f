"""SPEAR's figures (bench/report/figures/spear.py): analytic curves and aggregation from rows."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.report.__main__ import main
from bench.report.columns import error_bars, wilson
from bench.report.figures.spear import (expected_proposals, failure_bound, failure_width_data, plot_failure_width,
                                        plot_sampling, plot_two_stage, sampling_data, two_stage_data)


def test_failure_bound_small_cases_by_hand():
    # B=2, k=1: 2 * P[Bin(3, 1/2) = 0] = 2/8
    assert float(failure_bound(3, 2)) == pytest.approx(0.25)
    # B=3, k=2: 3 * P[Bin(4, 1/2) <= 1] = 3 * 5/16, capped at 1 for small m
    assert float(failure_bound(4, 3)) == pytest.approx(15 / 16)
    assert float(failure_bound(2, 3)) == 1.0
    ms = np.arange(8, 200)
    assert np.all(np.diff(failure_bound(ms, 8)) <= 0)  # wider layers fail less
    # a stricter filter (more zeros needed) can only raise the bound
    assert np.all(failure_bound(ms, 8, k=np.maximum(np.ceil(0.05 * ms), 10)) >= failure_bound(ms, 8))


def test_failure_bound_holds_under_its_model():
    """Monte Carlo under independent 1/2 activations: P[some sample < B-1 inactive] <= bound."""
    rng = np.random.default_rng(0)
    m, B, trials = 14, 5, 20000
    inactive = rng.random((trials, B, m)) < 0.5
    p_some = float((inactive.sum(2) < B - 1).any(1).mean())
    assert p_some > 0.01  # the event is not negligible here, so the comparison means something
    assert p_some <= float(failure_bound(m, B)) + 3 * math.sqrt(p_some / trials)


def test_expected_proposals():
    assert float(expected_proposals(1)) == pytest.approx(1.0)
    assert float(expected_proposals(3)) == pytest.approx(4 * (1 + 1 / 2 + 1 / 3))
    assert np.all(np.diff(expected_proposals(np.arange(1, 20))) > 0)


def test_wilson_interval_contains_estimate():
    lo, hi = wilson(np.array([0, 3, 8]), np.array([8, 8, 8]))
    assert lo[0] == 0 and 0 < hi[0] < 0.5
    assert lo[1] < 3 / 8 < hi[1]
    assert hi[2] == 1 and 0.5 < lo[2] < 1


# n = 11, 22 (k = 0) and 6, 21, 100 (k = n): the score formula alone puts an end an ulp on the
# wrong side of the estimate there; the others are the usual sizes.
ENDS_N = [1, 3, 6, 10, 11, 21, 22, 100, 1000]


@pytest.mark.parametrize("n", ENDS_N)
def test_wilson_interval_contains_estimate_at_zero_and_one(n):
    lo, hi = wilson(np.array([0, n]), np.array([n, n]))
    assert lo[0] == 0.0 and 0.0 < hi[0] < 1.0  # p = 0: the lower end is the estimate itself
    assert hi[1] == 1.0 and 0.0 < lo[1] < 1.0  # p = 1: the upper end is the estimate itself
    assert lo[1] == pytest.approx(1.0 - hi[0])  # symmetric in k <-> n - k
    err = error_bars([0.0, 1.0], lo, hi)
    assert err.shape == (2, 2) and (err >= 0).all()
    assert err[0, 0] == 0.0 and err[1, 1] == 0.0


def test_wilson_interval_contains_estimate_for_every_count():
    n = np.repeat(np.arange(1, 301), np.arange(2, 302))  # every (k, n) with 0 <= k <= n <= 300
    k = np.concatenate([np.arange(m + 1) for m in range(1, 301)])
    lo, hi = wilson(k, n)
    p = k / n
    assert ((0 <= lo) & (lo <= p) & (p <= hi) & (hi <= 1)).all()
    assert (error_bars(p, lo, hi) >= 0).all()
    # percentages computed as 100 k / n beside 100 * the interval stay non-negative too
    assert (error_bars(100.0 * k / n, 100 * lo, 100 * hi) >= 0).all()
    lo0, hi0 = wilson([0, 3], [0, 8])  # no batch at a point: no interval
    assert np.isnan(lo0[0]) and np.isnan(hi0[0]) and 0 < lo0[1] < 3 / 8 < hi0[1] < 1


@pytest.mark.parametrize("n", [11, 22, 6, 21])
def test_figures_draw_points_where_no_batch_or_every_batch_failed(tmp_path, n):
    """A width where no batch failed (p = 0) or every one did (p = 1), and a batch size recovered
    every time: the error bars must be drawable (matplotlib refuses negative yerr)."""
    rows = (_rows(n, batch_size=4, width=16, status="failed", exact_fraction=0.0)
            + _rows(n, batch_size=4, width=32))
    png = plot_failure_width(pd.DataFrame(rows), tmp_path / "fig_failure_width").png
    csv = pd.read_csv(png.with_suffix(".csv"))
    assert csv["p_fail"].tolist() == [1.0, 0.0]
    assert csv["ci_hi"].tolist()[0] == 1.0 and csv["ci_lo"].tolist()[1] == 0.0
    rows = (_rows(n, batch_size=8, width=48, diag_second_stage=1, diag_stage2_swaps=0)
            + _rows(n, batch_size=8, width=48, diag_second_stage=0, diag_stage2_swaps=0,
                    status="failed", exact_fraction=0.0))
    assert plot_two_stage(pd.DataFrame(rows), tmp_path / "fig_two_stage").png.exists()


def _rows(n, **kw):
    base = {"dataset": "mnist", "data_source": "real", "model": "fcnn", "depth": 6, "profile": "quick",
            "time_attack_s": 0.1, "status": "ok", "exact_fraction": 1.0}
    return [dict(base, batch_index=i, **{k: (v[i] if isinstance(v, list) else v) for k, v in kw.items()})
            for i in range(n)]


def test_failure_width_counts_inexact_and_drops_not_applicable(tmp_path):
    rows = (_rows(4, batch_size=4, width=16, status=["ok", "failed", "partial", "ok"],
                  exact_fraction=[1.0, 0.0, 0.75, 1.0])
            + _rows(4, batch_size=4, width=32)
            + _rows(2, batch_size=8, width=8, status="not_applicable", exact_fraction=None)
            + _rows(3, batch_size=8, width=32, status=["ok", "ok", "failed"], exact_fraction=[1, 1, 0]))
    df = pd.DataFrame(rows)
    t = failure_width_data(df)
    got = {(r.batch_size, r.width): (r.failures, r.n) for r in t.itertuples()}
    assert got == {(4, 16): (2, 4), (4, 32): (0, 4), (8, 32): (1, 3)}
    png = plot_failure_width(df, tmp_path / "fig_failure_width").png
    assert png.exists() and png.with_suffix(".pdf").exists()
    csv = pd.read_csv(png.with_suffix(".csv"))
    assert csv["p_fail"].tolist() == pytest.approx([0.5, 0.0, 1 / 3])


def test_sampling_percentiles_over_recovered_batches(tmp_path):
    props = [64, 128, 192, 256, 320, 384, 448, 512, 576, 640]
    rows = (_rows(10, batch_size=6, width=200, diag_proposals_to_success=props)
            + _rows(2, batch_size=6, width=2000, diag_proposals_to_success=[64, None],
                    status=["ok", "failed"], exact_fraction=[1, 0]))
    df = pd.DataFrame(rows)
    t = sampling_data(df).set_index("width")
    assert t.loc[200, "median"] == np.median(props)
    assert t.loc[200, "p10"] == pytest.approx(np.percentile(props, 10))
    assert t.loc[200, "p90"] == pytest.approx(np.percentile(props, 90))
    assert (t.loc[2000, "succeeded"], t.loc[2000, "n"]) == (1, 2)
    assert t.loc[200, "expected_2^(B-1)H_B"] == pytest.approx(32 * (1 + 1/2 + 1/3 + 1/4 + 1/5 + 1/6))
    assert plot_sampling(df, tmp_path / "fig_sampling").png.exists()


def test_two_stage_accuracy_per_stage(tmp_path):
    rows = (_rows(4, batch_size=8, width=48, diag_second_stage=1, diag_stage2_swaps=[0, 2, 1, 0])
            + _rows(4, batch_size=8, width=48, diag_second_stage=0, diag_stage2_swaps=0,
                    status=["ok", "partial", "ok", "failed"], exact_fraction=[1, 0.9, 1, 0])
            + _rows(2, batch_size=8, width=48))  # rows without the knob (older runs) are left out
    df = pd.DataFrame(rows)
    t = two_stage_data(df).set_index("second_stage")
    assert t.loc[True, "accuracy_pct"] == 100 and t.loc[True, "n"] == 4
    assert t.loc[False, "accuracy_pct"] == 50 and t.loc[False, "n"] == 4
    assert t.loc[True, "mean_swaps"] == pytest.approx(0.75)
    assert plot_two_stage(df, tmp_path / "fig_two_stage").png.exists()


def test_report_names_missing_experiments(tmp_path, capsys):
    assert main(["--experiment", "fig_sampling", "--profile", "quick", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no result rows under" in err and "make figures" in err


@pytest.mark.parametrize("name, rows", [
    ("fig_failure_width", lambda: _rows(3, batch_size=8, width=8, status="not_applicable", exact_fraction=None)),
    ("fig_sampling", lambda: _rows(3, batch_size=4, width=16, status="failed", exact_fraction=0.0)),
    ("fig_two_stage", lambda: _rows(3, batch_size=4, width=16)),  # no diag_second_stage
])
def test_rows_with_nothing_to_plot_give_no_figure_and_a_reason(tmp_path, capsys, name, rows):
    from bench.record.rows import RowWriter, make_row

    w = RowWriter(tmp_path / "raw" / name / "r.jsonl")
    for i, r in enumerate(rows()):
        w.write(make_row(**dict(r, config_hash="h", run_id="r", experiment=name, time_attack_s=0.1)))
    assert main(["--experiment", name, "--profile", "quick", "--results", str(tmp_path)]) == 2
    assert not list((tmp_path / "figures").glob("**/*.png"))
    assert "not drawn" in capsys.readouterr().err


def test_filter_curve_reads_the_knobs_the_rows_recorded(tmp_path):
    """The filter's bound uses the rows' diag_filter_tau / diag_filter_min_extra_zeros (SPEAR's
    diagnostics), not the attack's config class; without them the curve is left out."""
    from bench.report.figures.spear import _filter_knobs

    rows = _rows(3, batch_size=4, width=16, diag_filter_tau=0.05, diag_filter_min_extra_zeros=3)
    assert _filter_knobs(pd.DataFrame(rows)) == (0.05, 3)
    assert _filter_knobs(pd.DataFrame(_rows(3, batch_size=4, width=16))) is None
    plot_failure_width(pd.DataFrame(rows), tmp_path / "f")  # draws with the knobs


def test_reporting_never_imports_an_attack():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "bench" / "report"
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            offenders += [f"{path.name}: {n}" for n in names if n == "attacks" or n.startswith("attacks.")]
    assert len(list(root.rglob("*.py"))) > 5 and not offenders, offenders
