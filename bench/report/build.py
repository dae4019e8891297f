"""Build one experiment's report: its tables (printed as markdown), its figures and its manifest
(results/report/<experiment>.json, what the page lists)."""
from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from bench.report import format as F
from bench.report import rows as R
from bench.report.columns import statuses
from bench.report.figures import figures_for
from bench.report.tables import tables_for


def _rel(p: Path, results: Path) -> str:
    return Path(os.path.relpath(Path(p).resolve(), results.resolve())).as_posix()


def build(results: Path, experiment: str, profile: str | None, *, quiet: bool = False) -> dict:
    """Tables, figures and the manifest of one experiment; raises FileNotFoundError / ValueError
    when it has no rows (of ``profile``). Returns the manifest; the tables are at
    ``results/tables/<name>.md`` (:func:`table_path`)."""
    results = Path(results)
    df = R.load_rows(results, experiment, profile)
    tables = tables_for(experiment, df)
    for t in tables:
        md = F.write(t, results / "tables")
        if not quiet:
            print(F.markdown(t))
        print(f"[spear-bench] table: {md}", file=sys.stderr)
    figures, skipped = figures_for(experiment, df, results, profile)
    for f in figures:
        print(f"[spear-bench] {f.kind}: {f.png}", file=sys.stderr)
    for s in skipped:
        print(f"[spear-bench] {s}", file=sys.stderr)
    manifest = {
        "experiment": experiment, "profile": profile,
        "built_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "n_rows": len(df), "statuses": statuses(df), "provenance": R.provenance(df),
        "rows_files": [_rel(p, results) for p in R.rows_files(results, experiment)],
        "tables": [F.as_json(t) for t in tables],
        "figures": [{"name": f.name, "title": f.title, "kind": f.kind, "png": _rel(f.png, results),
                     "files": [_rel(p, results) for p in f.files()]} for f in figures],
        "skipped": skipped,
    }
    F.write_json(manifest, results / "report" / f"{experiment}.json")
    return manifest


def table_path(results: Path, manifest: dict, index: int = 0) -> Path:
    """The markdown file of the manifest's ``index``-th table."""
    return Path(results) / "tables" / f"{manifest['tables'][index]['name']}.md"


__all__ = ["build", "table_path"]
