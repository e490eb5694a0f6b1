"""Shipped data sets load, match their data cards, and fail with a message that says what to do."""

import hashlib
import shutil
from pathlib import Path

import pytest

from adamclinic import data

ROOT = Path(__file__).resolve().parents[1]
CSVS = sorted((ROOT / "datasets").glob("*.csv"))


@pytest.mark.parametrize("csv", CSVS, ids=lambda p: p.name)
def test_every_csv_has_a_data_card_with_its_checksum(csv):
    card = csv.with_suffix(".md").read_text(encoding="utf-8")
    for heading in ("Source", "Licence", "Columns", "sha256"):
        assert heading in card, f"{csv.with_suffix('.md').name} lacks {heading}"
    assert f"sha256: {hashlib.sha256(csv.read_bytes()).hexdigest()}" in card


def test_smooth_regression_splits_into_train_and_validation():
    dataset = data.smooth_regression()
    assert dataset.x_train.shape == (1024, 10) and dataset.y_train.shape == (1024, 1)
    assert dataset.x_val.shape == (256, 10)


@pytest.fixture
def course_copy(tmp_path, monkeypatch):
    for name in ("smooth_regression.csv", "smooth_regression.md"):
        shutil.copy(ROOT / "datasets" / name, tmp_path / name)
    monkeypatch.setenv("ADAMCLINIC_DATASETS", str(tmp_path))
    return tmp_path


def test_a_missing_file_names_the_file_and_the_fix(course_copy):
    (course_copy / "smooth_regression.csv").unlink()
    with pytest.raises(data.DatasetError, match=r"smooth_regression\.csv is missing.*git checkout"):
        data.load_csv("smooth_regression")


def test_a_damaged_file_is_refused_with_the_fix(course_copy):
    path = course_copy / "smooth_regression.csv"
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(data.DatasetError, match=r"damaged or was edited.*make_datasets\.py"):
        data.load_csv("smooth_regression")


def load_maker():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_datasets", ROOT / "datasets" / "make_datasets.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    return maker


def test_every_shipped_csv_is_made_by_the_script():
    assert sorted(load_maker().DATASETS) == [p.name for p in CSVS]


@pytest.mark.parametrize("csv", CSVS, ids=lambda p: p.name)
def test_the_generator_script_reproduces_the_shipped_csv(tmp_path, csv):
    out = tmp_path / csv.name
    load_maker().DATASETS[csv.name]().to_csv(out, index=False, lineterminator="\n")
    assert out.read_bytes() == csv.read_bytes()
