"""Every table, by experiment: :func:`tables_for` gives the tables of one experiment's rows.

* table1, tabular, cnn and any experiment not named below: by attack and dataset beside
  results/paper.yaml (bench/report/tables/summary.py; Table 1 with its main comparison);
* dp, fedavg, depth, label_homogeneous: bench/report/tables/defenses.py;
* large_batch: bench/report/tables/large_batch.py;
* the fig_* experiments have figures only (their CSV holds the plotted numbers).
"""
from __future__ import annotations

import pandas as pd

from bench.report.format import Table
from bench.report.tables import defenses, large_batch, summary

FIGURE_ONLY = ("fig_failure_width", "fig_sampling", "fig_two_stage", "fig_teaser")


def tables_for(experiment: str, df: pd.DataFrame) -> list[Table]:
    if experiment in FIGURE_ONLY:
        return []
    if experiment in defenses.FRAMES:
        return [defenses.table(df, experiment)]
    if experiment == "large_batch":
        return [large_batch.table(df)]
    return [summary.table(df, experiment)]


__all__ = ["FIGURE_ONLY", "tables_for"]
