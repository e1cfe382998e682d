"""The catalog keeps what the pipelines promise to keep: every quarantine and gate dataset of every registered
pipeline resolves to a file (no row is lost in memory), through the gate dataset factories."""

import pandas as pd
from kedro.io import DataCatalog, MemoryDataset

from frugalml.config import load_config
from frugalml.pipeline_registry import register_pipelines
from tests.helpers import REPO


def project_catalog(monkeypatch, tmp_path) -> DataCatalog:
    monkeypatch.chdir(tmp_path)  # relative file paths land in the test's folder
    return DataCatalog.from_config(load_config("catalog", REPO / "conf", env=None))


def pipeline_datasets() -> set[str]:
    return {name for pipeline in register_pipelines().values() for name in pipeline.datasets()}


def test_every_quarantine_and_gate_dataset_is_persisted(monkeypatch, tmp_path):
    catalog = project_catalog(monkeypatch, tmp_path)
    kept = sorted(n for n in pipeline_datasets() if n.endswith("_quarantine") or "_gate_" in n)
    gates = {n.split("_gate_")[0] for n in kept if "_gate_" in n}
    assert {"emails", "train_set", "predictions"} <= gates
    for name in kept:
        if name.endswith("_gate_passed"):  # the gate's verdict travels in memory on purpose
            continue
        dataset = catalog.get(name, fallback_to_runtime_pattern=False)
        assert dataset is not None and not isinstance(dataset, MemoryDataset), name


def test_the_predictions_gate_quarantine_is_saved_to_a_file(monkeypatch, tmp_path):
    catalog = project_catalog(monkeypatch, tmp_path)
    rows = pd.DataFrame({"email_id": ["a"], "reason": ["probability_positive outside [0, 1]"]})
    catalog.save("predictions_gate_quarantine", rows)
    saved = tmp_path / "data" / "02_intermediate" / "predictions_gate_quarantine.parquet"
    assert pd.read_parquet(saved).equals(rows)


def test_a_new_gate_needs_no_catalog_entry(monkeypatch, tmp_path):
    catalog = project_catalog(monkeypatch, tmp_path)
    dataset = catalog.get("compressed_predictions_gate_quarantine", fallback_to_runtime_pattern=False)
    assert dataset is not None and not isinstance(dataset, MemoryDataset)
