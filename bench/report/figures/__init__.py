"""Every figure, by experiment: :func:`figures_for` draws the figures of one experiment's rows.

* fig_failure_width, fig_sampling, fig_two_stage: bench/report/figures/spear.py;
* dp, fedavg, depth: bench/report/figures/defenses.py;
* large_batch: bench/report/figures/large_batch.py;
* reconstruction grids (bench/report/figures/grids.py): the teaser (every attack of one batch, then
  the truth) for table1, fig_teaser and cnn, and each run's grid wherever rows hold thumbnails.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.figures import defenses, grids, large_batch, spear
from bench.report.figures.plot import Figure, NothingToPlot


def figures_for(experiment: str, df: pd.DataFrame, results: Path, profile: str | None) -> tuple[list[Figure], list[str]]:
    """The figures drawn from ``df`` (the experiment's rows) and why any was not drawn."""
    results = Path(results)
    figures, skipped = [], []
    draw = []
    if experiment in spear.FIGURES:
        draw.append((experiment, lambda: spear.FIGURES[experiment](df, results / "figures" / experiment)))
    if experiment in defenses.DRAW:
        draw.append((defenses.DRAW[experiment][0], lambda: defenses.figure(df, experiment, results / "figures")))
    if experiment == "large_batch":
        draw.append(("fig_large_batch", lambda: large_batch.figure(df, results / "figures")))
    for name, fn in draw:
        try:
            figures.append(fn())
        except NothingToPlot as exc:
            skipped.append(f"{name}: not drawn, {exc} ({len(df)} rows under {results / 'raw' / experiment})")
    if experiment in grids.TEASER_EXPERIMENTS:
        made = grids.teaser_grids(results, profile=profile, experiment=experiment)
        figures += [Figure(name=p.stem, title=f"reconstructions of one batch ({p.stem.split('_', 2)[-1]}): "
                           "attacks top to bottom, ground truth last", png=p, kind="grid") for p in made]
        if not made:
            skipped.append(f"{experiment} grids: no row holds a thumbnail (save_images=0, or the files under "
                           f"{results / 'raw' / experiment} are gone)")
    figures += grids.run_grids(results, experiment, df)
    return figures, skipped


__all__ = ["Figure", "NothingToPlot", "figures_for"]
