"""The one entry of the report: every table and figure for which rows exist, then the page.

    python -m bench.report                                  # every experiment under results/raw
    python -m bench.report --experiment table1 --profile quick
    python -m bench.report --experiment dp fedavg depth label_homogeneous --profile quick

Writes results/tables/<table>.{md,csv,tex} (markdown also printed here), results/figures/ (PNG,
PDF and the CSV of the plotted numbers), results/report/<experiment>.json (what the page lists)
and results/index.html. ``make report`` runs it for every experiment; the reproduce-* and figures
targets run it for theirs.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench.report import rows as R
from bench.report.build import build
from bench.report.html import build_page


def _wandb(results: Path, manifest: dict, profile: str | None, wandb_dir: str) -> None:
    import pandas as pd

    from bench.record.loggers import log_table_run

    for t in manifest["tables"]:
        md = results / "tables" / f"{t['name']}.md"
        run_dir = log_table_run(pd.read_csv(md.with_suffix(".csv")), t["name"], profile=profile,
                                markdown=md.read_text(encoding="utf-8"), dir=wandb_dir)
        print(f"[spear-bench] W&B table run: {run_dir}", file=sys.stderr)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiment", nargs="+", default=None, metavar="X",
                    help="experiments to build (default: every one with rows under <results>/raw)")
    ap.add_argument("--profile", default=None, help="keep only rows of this profile (quick | paper | ...)")
    ap.add_argument("--results", default=os.environ.get("SPEAR_RESULTS", "results"),
                    help="results folder (default: $SPEAR_RESULTS, else results)")
    ap.add_argument("--no-page", action="store_true", help="tables and figures only, no results/index.html")
    ap.add_argument("--wandb", action="store_true",
                    help="also log each table as a W&B run (job type 'table'; offline unless "
                         "WANDB_MODE=online): make reproduce-table1 LOGGER=wandb")
    ap.add_argument("--wandb-dir", default="outputs",
                    help="where offline W&B runs go (<dir>/wandb/offline-run-*; default: outputs)")
    args = ap.parse_args(argv)
    results = Path(args.results)
    asked = args.experiment is not None
    names = args.experiment if asked else R.experiments(results)
    failed = []
    for name in names:
        try:
            manifest = build(results, name, args.profile)
        except (FileNotFoundError, ValueError) as exc:
            if asked:
                print(f"error: {exc}", file=sys.stderr)
                failed.append(name)
            else:
                print(f"[spear-bench] {name}: skipped, {exc}", file=sys.stderr)
            continue
        if asked and any(": not drawn," in s for s in manifest["skipped"]):
            failed.append(name)
        if args.wandb:
            _wandb(results, manifest, args.profile, args.wandb_dir)
    if not names:
        print(f"error: no result rows under {results / 'raw'}; run an experiment first (e.g. `make "
              f"reproduce-table1`), then `make report`", file=sys.stderr)
    if not args.no_page:
        print(f"[spear-bench] page: {build_page(results)}", file=sys.stderr)
    if failed:
        print(f"error: incomplete report for {', '.join(failed)} (no rows, or a figure had nothing to plot; "
              "see above)", file=sys.stderr)
    return 2 if failed or not names else 0


if __name__ == "__main__":
    raise SystemExit(main())
