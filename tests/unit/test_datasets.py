from pathlib import Path

import numpy as np
import pytest

import datasets
from datasets import DatasetUnavailable, load_source, select_batch

REPO = Path(__file__).resolve().parents[2]


def test_datasets_package_is_ours_not_huggingface():
    assert Path(datasets.__file__).resolve().is_relative_to(REPO)


def test_select_batch_is_deterministic_and_balanced():
    labels = np.repeat(np.arange(10), 30)
    a = select_batch(labels, 10, seed=0, batch_index=3)
    assert a == select_batch(labels, 10, seed=0, batch_index=3)
    assert a != select_batch(labels, 10, seed=0, batch_index=4)
    assert sorted(labels[a].tolist()) == list(range(10))  # distinct labels
    b = select_batch(labels, 20, seed=1, batch_index=0)
    assert len(set(b)) == 20 and np.bincount(labels[b], minlength=10).max() == 2


def test_select_batch_rejects_too_large_batches():
    with pytest.raises(ValueError, match="exceeds"):
        select_batch(np.zeros(3), 5, seed=0, batch_index=0)


@pytest.mark.parametrize("name,shape", [("cifar10", (3, 32, 32)), ("tiny_imagenet", (3, 64, 64)),
                                        ("imagenet224", (3, 224, 224))])
def test_standins_are_marked_and_shaped(name, shape, tmp_path):
    src = load_source(name, root=tmp_path)  # empty root: no real data
    assert src.data_source == "stand-in:pictures"
    x, y, ids = src.batch([0, 1, 2])
    assert tuple(x.shape[1:]) == shape and 0 <= x.min() and x.max() <= 1
    assert len(set(ids)) == 3


def test_imagenet720_standin_labels_upsampled_crops(tmp_path):
    src = load_source("imagenet720", root=tmp_path)
    native = [i for i in src.ids if "upsampled" not in i]
    assert native and all(i.split("#")[0] in ("retina", "hubble") for i in native)
    assert any("upsampled" in i for i in src.ids)


def test_mnist_is_real_offline(tmp_path):
    src = load_source("mnist", root=tmp_path)
    assert src.data_source == "real" and len(src) == 5000
    assert sorted(set(src.labels.tolist())) == list(range(10))


def test_missing_data_without_standin_names_path_and_fix(tmp_path):
    with pytest.raises(DatasetUnavailable) as exc:
        load_source("tiny_imagenet", root=tmp_path, allow_standin=False)
    msg = str(exc.value)
    assert str(tmp_path.resolve()) in msg and "tiny-imagenet-200" in msg and "allow_standin" in msg
