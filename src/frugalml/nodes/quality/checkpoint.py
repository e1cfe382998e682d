"""Running a suite as a GX 1.x Checkpoint on an ephemeral context, with Data Docs, and making results plain."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from frugalml.nodes.quality.suites import ROW


def _run_checkpoint(view: pd.DataFrame, name: str, expectations: list[Any]) -> tuple[Any, dict[str, bytes]]:
    """Validate with a GX Checkpoint in an ephemeral context; Data Docs are built into a temp folder."""
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}  # type: ignore[assignment]  # GX accepts the dict
    with tempfile.TemporaryDirectory(prefix="gx-docs-") as docs_dir:
        for site in list(context.list_data_docs_sites()):
            context.delete_data_docs_site(site)
        context.add_data_docs_site(
            "frugalml",
            {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,  # type: ignore[typeddict-unknown-key]  # a SiteBuilder option
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": docs_dir},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        batch = context.data_sources.add_pandas("frugalml").add_dataframe_asset(name)
        suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(
                name=f"{name}_validation", data=batch.add_batch_definition_whole_dataframe("batch"), suite=suite
            )
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=f"{name}_gate",
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["frugalml"])],
                result_format={
                    "result_format": "COMPLETE",
                    "unexpected_index_column_names": [ROW],
                    "return_unexpected_index_query": False,
                },
            )
        )
        result = checkpoint.run(batch_parameters={"dataframe": view})
        docs = {
            str(path.relative_to(docs_dir)): path.read_bytes() for path in Path(docs_dir).rglob("*") if path.is_file()
        }
    return result, docs


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value[:20]]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in list(value.items())[:20]}
    if isinstance(value, bytes):
        return repr(value[:40])
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _exception(result: Any) -> str | None:
    info = result.exception_info or {}
    items = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    messages = [str(item.get("exception_message")) for item in items if item.get("raised_exception")]
    return "; ".join(messages)[:500] or None


def _safe_for_parquet(frame: pd.DataFrame) -> pd.DataFrame:
    """Quarantined rows may hold bytes in text columns: keep them losslessly as latin-1 text and say so."""
    out = frame.copy()
    bytes_columns = []
    for column in out.columns:
        if out[column].dtype == object and out[column].map(lambda v: isinstance(v, bytes)).any():
            bytes_columns.append(column)
            out[column] = out[column].map(lambda v: v.decode("latin-1") if isinstance(v, bytes) else v)
    out["bytes_columns"] = ",".join(bytes_columns)
    return out
