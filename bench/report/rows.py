"""The one row loader: JSONL rows of an experiment (and profile), newest row per batch, and groupings."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.record.rows import read_rows

# Row fields that change results: rows that differ in any of them never share a table line.
# setting_hash (the semantic config without the seed, plus the data's identity and the weights)
# catches what the visible keys miss (an attack's budget); rows from different seeds do share one.
SETTING_KEYS = ("batch_size", "model", "width", "depth", "activation", "dtype", "labels_known",
                "batch_size_known", "defense", "profile", "data_source", "model_state", "setting_hash")
SETTING_LABEL = {"batch_size": "B", "labels_known": "labels known", "batch_size_known": "B known",
                 "data_source": "data", "model_state": "weights", "setting_hash": "config"}


def how_to_run(experiment: str) -> str:
    """The command that writes an experiment's rows."""
    known = {"dp": "reproduce-defenses", "fedavg": "reproduce-defenses", "depth": "reproduce-defenses",
             "label_homogeneous": "reproduce-defenses", "table1": "reproduce-table1", "tabular": "reproduce-tabular",
             "cnn": "reproduce-cnn", "large_batch": "reproduce-large-batch"}
    target = "figures" if experiment.startswith("fig_") else known.get(experiment)
    if target is None:
        return f"`python -m bench.run name={experiment} ...`"
    return f"`make {target}`, or `python -m bench.run -m experiment={experiment}`"


def rows_files(results: Path, experiment: str) -> list[Path]:
    """The JSONL files of one experiment (``results/raw/<experiment>/*.jsonl``), sorted."""
    return sorted((Path(results) / "raw" / experiment).glob("*.jsonl"))


def experiments(results: Path) -> list[str]:
    """Every experiment with a rows file under ``results/raw``, sorted."""
    raw = Path(results) / "raw"
    return sorted(d.name for d in raw.iterdir() if d.is_dir() and any(d.glob("*.jsonl"))) if raw.is_dir() else []


def load_rows(results: Path, experiment: str, profile: str | None = None) -> pd.DataFrame:
    """Rows of one experiment, the newest row of each batch only.

    A batch is (run, attack, dataset, batch index), the run being its rows file (``run_id``; rows
    without one fall back to their ``config_hash``). The file is named by the semantic config while
    the resume key also covers the data and the weights, so a batch recomputed after its data or
    weights changed, or an error row retried, is appended to the same file and supersedes the
    older row. Raises FileNotFoundError (no rows) or ValueError (no rows of ``profile``), each
    naming the folder and what to run.
    """
    results = Path(results)
    files = rows_files(results, experiment)
    if not files:
        raise FileNotFoundError(
            f"no result rows under {results / 'raw' / experiment}; run the experiment first "
            f"({how_to_run(experiment)})")
    df = pd.DataFrame(list(read_rows(files)))
    if df.empty:
        raise ValueError(f"no readable rows in {results / 'raw' / experiment} (every line was skipped)")
    if profile is not None and "profile" in df:
        found = sorted(set(df["profile"].dropna().astype(str)))
        df = df[df["profile"] == profile]
        if df.empty:
            raise ValueError(f"no rows of profile {profile!r} in {results / 'raw' / experiment} "
                             f"(profiles there: {', '.join(found) or 'none'}); pass --profile with one "
                             f"of them, or run the experiment with profile={profile}")
    key = df["run_id"].fillna(df["config_hash"]) if "run_id" in df else df["config_hash"]
    cols = ["_key"] + [c for c in ("dataset", "attack") if c in df] + ["batch_index"]
    return df.assign(_key=key).drop_duplicates(cols, keep="last").drop(columns="_key").reset_index(drop=True)


def try_load(results: Path, experiment: str, profile: str | None) -> pd.DataFrame | None:
    """:func:`load_rows`, or None when the experiment has no rows (of this profile)."""
    try:
        return load_rows(results, experiment, profile)
    except (FileNotFoundError, ValueError):
        return None


def value_label(v) -> str:
    """A setting value as a label: ``–`` for missing, integral floats without ``.0``."""
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def setting_groups(g: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Split the rows of one (attack, dataset) by setting: ``[(label, rows), ...]``.

    The label names the keys whose values differ between the groups (``"B=12"``, ``"dtype=float32"``)
    and is empty when there is only one setting.
    """
    g = g.copy()
    if "setting_hash" not in g:  # rows written before setting_hash: their config hash (seed included)
        g["setting_hash"] = None
    g["setting_hash"] = g["setting_hash"].fillna(g["config_hash"].astype(str))
    keys = [k for k in SETTING_KEYS if k in g]
    parts = list(g.groupby([g[k].astype(str) for k in keys], sort=False, dropna=False))
    if len(parts) == 1:
        return [("", g)]
    differing = [k for k in keys if g[k].astype(str).nunique(dropna=False) > 1]
    shown = [k for k in differing if k != "setting_hash"] or ["setting_hash"]
    out = []
    for _, h in parts:
        first = h.iloc[0]
        label = ", ".join(f"{SETTING_LABEL.get(k, k)}="
                          f"{value_label(first[k])[:8] if k == 'setting_hash' else value_label(first[k])}"
                          for k in shown)
        out.append((label, h))
    return out


def provenance(df: pd.DataFrame) -> dict[str, list[str]]:
    """Where the rows came from: commits, dates (first and last), machines, devices, profiles."""
    def values(col: str) -> list[str]:
        return sorted(set(df[col].dropna().astype(str))) if col in df else []

    sha = df[["git_sha", "git_dirty"]].dropna(subset=["git_sha"]) if "git_sha" in df else pd.DataFrame()
    commits = sorted({s[:10] + (" (uncommitted changes)" if str(d) == "True" else "")
                      for s, d in zip(sha.get("git_sha", []), sha.get("git_dirty", []))})
    stamps = values("timestamp_utc")
    return {"commit": commits, "date": [stamps[0], stamps[-1]] if len(stamps) > 1 else stamps,
            "machine": values("machine"), "device": values("device"), "profile": values("profile"),
            "torch": values("torch_version")}


__all__ = ["SETTING_KEYS", "SETTING_LABEL", "experiments", "how_to_run", "load_rows", "provenance", "rows_files",
           "setting_groups", "try_load", "value_label"]
