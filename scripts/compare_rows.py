#!/usr/bin/env python
"""Compare the rows of two runs of one experiment, ignoring times (e.g. local vs SLURM).

    .venv/bin/python scripts/compare_rows.py RESULTS_A RESULTS_B --experiment table1 [--profile quick]
    .venv/bin/python scripts/compare_rows.py RESULTS_A --experiment table1      # duplicates only
    .venv/bin/python scripts/compare_rows.py OLD NEW --experiment table1 --by-setting

--by-setting keys rows by what they ran (attack, dataset, precision, sizes, defense parameters,
batch) instead of the config hash: for two versions of the code whose config hashes differ.

RESULTS_* are results folders (what SPEAR_RESULTS points at: rows in raw/<experiment>/*.jsonl).
Rows are keyed by (attack, dataset, config_hash, batch_index). Checked: no key appears twice in a
folder (a resumed job must not rewrite a batch), both folders hold the same keys, and per key the
same status, sample ids, true labels, and PSNR / exactness / label accuracy / LPIPS within --tol.
PSNRs that are at or above the row's exactness threshold (exact_psnr_db, 80 dB) in both runs count
as equal unless --strict: up there (~270-300 dB, MSE ~1e-28) they are float64 round-off, which
changes with the number of torch threads (a 1-CPU SLURM job vs a 2-thread local run); the largest
such difference is printed. Exit status 0 when the runs agree, 1 otherwise.
"""
from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.record.rows import read_rows  # noqa: E402

EXACT = ("status", "sample_ids", "true_labels", "data_source", "batch_size")
CLOSE = ("psnr_mean", "psnr_min", "exact_fraction", "label_acc", "lpips_mean", "feature_cosine")
PSNR = ("psnr_mean", "psnr_min")


SETTING = ("dtype", "model", "activation", "width", "depth", "batch_size", "defense", "label_homogeneous",
           "labels_known", "batch_size_known", "diag_attacked_layer", "diag_second_stage")


DEFAULTS = {"activation": "relu"}


def key(row: dict, by_setting: bool = False) -> tuple:
    if not by_setting:
        return (row.get("attack"), row.get("dataset"), row.get("config_hash"), row.get("batch_index"))
    row = {**DEFAULTS, **row}  # rows written before a setting field existed ran at its default
    setting = tuple((f, str(row.get(f))) for f in SETTING if f in row)
    setting += tuple(sorted((f, str(v)) for f, v in row.items() if f.startswith("defense_")))
    return (row.get("attack"), row.get("dataset"), setting, row.get("batch_index"))


def load(results: Path, experiment: str, profile: str | None, by_setting: bool = False) -> tuple[dict, Counter]:
    files = sorted((results / "raw" / experiment).glob("*.jsonl"))
    if not files:
        raise SystemExit(f"no rows: {results / 'raw' / experiment}/*.jsonl")
    counts: Counter = Counter()
    rows = {}
    for row in read_rows(files):
        if profile is not None and row.get("profile") != profile:
            continue
        counts[key(row, by_setting)] += 1
        rows[key(row, by_setting)] = row
    return rows, counts


def _close(a, b, tol: float) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if math.isnan(a) and math.isnan(b):
            return True
        return abs(a - b) <= tol * max(1.0, abs(a), abs(b))
    return a == b


def compare(a: dict, b: dict, tol: float, strict: bool = False, roundoff: list | None = None) -> list[str]:
    problems = []
    for k in sorted(set(a) | set(b), key=str):
        if k not in a or k not in b:
            problems.append(f"{k}: only in {'A' if k in a else 'B'}")
            continue
        for f in EXACT:
            if a[k].get(f) != b[k].get(f):
                problems.append(f"{k}: {f} {a[k].get(f)!r} != {b[k].get(f)!r}")
        for f in CLOSE:
            x, y = a[k].get(f), b[k].get(f)
            exact_db = a[k].get("exact_psnr_db") or 80.0
            if (not strict and f in PSNR and x is not None and y is not None
                    and min(x, y) >= exact_db and not _close(x, y, tol)):
                if roundoff is not None:
                    roundoff.append(abs(x - y))
                continue
            if not _close(x, y, tol):
                problems.append(f"{k}: {f} {a[k].get(f)!r} != {b[k].get(f)!r}")
    return problems


def duplicates(counts: Counter) -> list[str]:
    return [f"{k}: written {n} times" for k, n in counts.items() if n > 1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="+", type=Path, help="one or two results folders")
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--tol", type=float, default=1e-6, help="relative tolerance of the metrics")
    ap.add_argument("--strict", action="store_true",
                    help="compare PSNRs above the exactness threshold too (bit-identical runs)")
    ap.add_argument("--by-setting", action="store_true",
                    help="key rows by their setting instead of the config hash (compare code versions)")
    args = ap.parse_args(argv)
    if len(args.results) > 2:
        ap.error("at most two results folders")
    loaded = [load(r, args.experiment, args.profile, args.by_setting) for r in args.results]
    bad = False
    for name, (rows, counts) in zip("AB", loaded):
        dups = duplicates(counts)
        by_job = Counter(k[:3] for k in rows)
        print(f"{name}: {sum(counts.values())} rows, {len(rows)} distinct (attack, dataset, config, batch), "
              f"{len(by_job)} jobs, {len(dups)} duplicated")
        for d in dups:
            print("  duplicate", d)
        bad |= bool(dups)
    if len(loaded) == 2:
        roundoff: list[float] = []
        problems = compare(loaded[0][0], loaded[1][0], args.tol, args.strict, roundoff)
        for p in problems:
            print("  differs", p)
        if roundoff:
            print(f"  {len(roundoff)} PSNR values differ only above the exactness threshold in both runs "
                  f"(float64 round-off; max |diff| {max(roundoff):.2f} dB)")
        print(f"A vs B: {len(loaded[0][0])} vs {len(loaded[1][0])} rows, "
              f"{f'{len(problems)} differences' if problems else 'the same up to times' + (' and round-off' if roundoff else '')} "
              f"(fields {', '.join(EXACT + CLOSE)}; rel. tol {args.tol:g})")
        bad |= bool(problems)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
