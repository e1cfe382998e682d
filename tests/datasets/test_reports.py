"""Report datasets: a Data Docs folder (and its MLflow copy), and the optional dataset."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from kedro.io import DatasetError

from frugalml.datasets.reports import HtmlSiteDataset, OptionalDataset


def test_site_is_written_replaced_and_logged(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_experiment("reports")  # not whatever experiment an earlier in-process Kedro run made active
    dataset = HtmlSiteDataset(path=str(tmp_path / "site"), artifact_path="docs")
    with mlflow.start_run() as run:
        dataset.save({"index.html": b"<html>1</html>", "static/a.css": b"x"})
        dataset.save({"index.html": b"<html>2</html>"})
    assert dataset.load() == {"index.html": b"<html>2</html>"}
    logged = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "docs")}
    assert "docs/index.html" in logged


def test_site_refuses_paths_outside_its_folder(tmp_path):
    with pytest.raises(DatasetError, match="outside"):
        HtmlSiteDataset(path=str(tmp_path / "site")).save({"../evil.html": b"x"})


def test_optional_dataset_is_none_until_written(tmp_path):
    target = tmp_path / "ref.parquet"
    optional = OptionalDataset(dataset={"type": "pandas.ParquetDataset", "filepath": str(target)})
    assert optional.load() is None
    pd.DataFrame({"a": [1]}).to_parquet(target)
    assert optional.load()["a"].tolist() == [1]
    with pytest.raises(DatasetError, match="read-only"):
        optional.save(pd.DataFrame())


def test_writable_optional_dataset_saves_through(tmp_path):
    target = tmp_path / "weak.parquet"
    optional = OptionalDataset(dataset={"type": "pandas.ParquetDataset", "filepath": str(target)}, writable=True)
    assert optional.load() is None
    optional.save(pd.DataFrame({"a": [2, 3]}))
    assert optional.load()["a"].tolist() == [2, 3] and target.is_file()
