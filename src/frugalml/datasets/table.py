"""A user's own CSV/Parquet text table, read so that a malformed file is named (ragged rows, a wrong encoding),
never read shifted into the wrong columns."""

from __future__ import annotations

import codecs
import csv
import logging
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from frugalml.errors import (
    ParameterError,
    SchemaError,
)

logger = logging.getLogger(__name__)


class TableReadError(SchemaError, DatasetError):
    """A user's table cannot be read as it is: a wrong encoding, or rows whose field count differs from the
    header's (a :class:`~frugalml.errors.SchemaError`; also a ``DatasetError`` so Kedro shows it unwrapped)."""


def guess_encoding(data: bytes, *, exclude: str | None = None) -> str:
    """The most likely text encoding of some bytes (byte-order marks, then UTF-8, then Windows-1252).

    Args:
        data: The start of a file (or all of it).
        exclude: An encoding known not to work (the one that just failed).

    Returns:
        A codec name for ``load_args: {encoding: ...}``.
    """
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    excluded = codecs.lookup(exclude).name if exclude else None
    for candidate in ("utf-8", "cp1252"):
        if codecs.lookup(candidate).name == excluded:
            continue
        try:
            data.decode(candidate)
        except UnicodeDecodeError:
            continue
        return candidate
    return "latin-1"  # decodes any byte sequence: check the result


def _encoding_error(path: Path, encoding: str, error: UnicodeDecodeError) -> TableReadError:
    data = path.read_bytes()
    guess = guess_encoding(data, exclude=encoding)
    try:
        data.decode(encoding)
        start, byte = None, "?"
    except UnicodeDecodeError as whole:  # the offset in the file, not in the decoder's chunk
        start, byte = whole.start, data[whole.start : whole.start + 1].hex()
    where = f" on line {data.count(10, 0, start) + 1}" if start is not None else ""  # 10: line feed
    return TableReadError(
        f"cannot read {path} as {encoding}: byte 0x{byte}{where} is not valid {encoding} ({error.reason}). "
        f"The file looks {guess}-encoded: add `load_args: {{encoding: {guess}}}` to its catalog entry "
        "(conf/local/catalog.yml)"
    )


def _ragged_records(
    reader: Any, skip: int, expected: int | None, header: Any
) -> tuple[int | None, int, list[tuple[int, int]]]:
    """Count the records and find those whose field count differs from the header's (or ``names``')."""
    ragged: list[tuple[int, int]] = []
    records = 0
    for number, record in enumerate(reader):
        if number < skip or not record:
            continue
        if expected is None:
            expected = len(record)
            if header is not None:
                continue  # the header row itself
        records += 1
        if len(record) != expected:
            ragged.append((reader.line_num, len(record)))
    return expected, records, ragged


def check_csv_shape(path: Path, load_args: dict[str, Any]) -> None:
    """Every record of a CSV file must have the header's number of fields.

    pandas reads a file whose rows all have one field more than the header by turning the first field into
    the index (every value lands one column off), and a row with fewer fields gets missing values; both are
    refused here, naming the lines.

    Args:
        path: The CSV file.
        load_args: The catalog entry's ``load_args`` (``encoding``, ``sep``/``delimiter``, ``quotechar``,
            ``header``, ``names``, ``skiprows`` are honoured; a regex separator skips the check).

    Raises:
        TableReadError: On ragged rows or a wrong encoding.
    """
    encoding = load_args.get("encoding") or "utf-8"
    sep = load_args.get("sep", load_args.get("delimiter", ","))
    if not isinstance(sep, str) or len(sep) != 1:
        return  # a regex or sniffed separator: pandas' own parser decides
    skip = load_args.get("skiprows", 0)
    if not isinstance(skip, int):
        return
    names = load_args.get("names")
    expected: int | None = len(names) if names is not None else None
    try:
        with path.open(encoding=encoding, newline="") as handle:
            reader = csv.reader(handle, delimiter=sep, quotechar=load_args.get("quotechar", '"'))
            expected, records, ragged = _ragged_records(reader, skip, expected, load_args.get("header", "infer"))
    except UnicodeDecodeError as error:
        raise _encoding_error(path, encoding, error) from None
    except csv.Error as error:
        raise TableReadError(f"cannot read {path} as CSV: {error}") from None
    if ragged:
        shown = ", ".join(f"line {line} has {count}" for line, count in ragged[:10])
        raise TableReadError(
            f"{path}: {len(ragged)} of {records} rows do not have the header's {expected} fields ({shown}"
            f"{', ...' if len(ragged) > 10 else ''}); pandas would read them shifted into the wrong columns. "
            f"Quote text that contains the separator {sep!r}, remove trailing separators, or fix the header"
        )


class TextTableDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """A user's own (text, label) table, CSV or Parquet, read strictly.

    Example catalog entry (``conf/local/catalog.yml``)::

        emails:
          type: frugalml.datasets.corpus.TextTableDataset
          filepath: data/01_raw/tickets.csv
          load_args: {encoding: cp1252}      # only when the file is not UTF-8

    Unlike ``pandas.CSVDataset``, a CSV whose rows do not all have the header's number of fields is refused
    naming the lines (pandas would shift them into the wrong columns or use a column as the index), and a
    wrong encoding is refused naming the byte, the line and the ``load_args: {encoding: ...}`` to use.
    """

    def __init__(
        self,
        *,
        filepath: str,
        file_format: Literal["auto", "csv", "parquet"] = "auto",
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Configure the table.

        Args:
            filepath: The file.
            file_format: ``csv``, ``parquet`` or ``auto`` (by the file's suffix: ``.parquet``/``.pq`` or CSV).
            load_args: Passed to ``pandas.read_csv`` / ``read_parquet``.
            save_args: Passed to ``DataFrame.to_csv`` / ``to_parquet``.
            metadata: Free-form Kedro metadata.

        Raises:
            ParameterError: On an unknown format.
        """
        if file_format not in ("auto", "csv", "parquet"):
            raise ParameterError(f"TextTableDataset file_format must be auto, csv or parquet, got {file_format!r}")
        self._path = Path(filepath)
        if file_format == "auto":
            file_format = "parquet" if self._path.suffix.lower() in (".parquet", ".pq") else "csv"
        self._format = file_format
        self._load_args = dict(load_args or {})
        self._save_args = dict(save_args or {})
        self.metadata = metadata

    def load(self) -> pd.DataFrame:
        """Read the table.

        Returns:
            The table, with a plain positional index.

        Raises:
            TableReadError: When the file is missing, ragged or in another encoding than declared.
        """
        if not self._path.is_file():
            raise TableReadError(f"table {self._path} does not exist")
        if self._format == "parquet":
            return pd.read_parquet(self._path, **self._load_args)
        check_csv_shape(self._path, self._load_args)
        encoding = self._load_args.get("encoding") or "utf-8"
        try:
            return pd.read_csv(self._path, **{"index_col": False, **self._load_args})
        except UnicodeDecodeError as error:
            raise _encoding_error(self._path, encoding, error) from None

    def save(self, data: pd.DataFrame) -> None:
        """Write the table (CSV without the index, or Parquet).

        Args:
            data: The table.
        """
        self._path.parent.mkdir(parents=True, exist_ok=True)
        if self._format == "parquet":
            data.to_parquet(self._path, **self._save_args)
        else:
            data.to_csv(self._path, **{"index": False, **self._save_args})

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._path), "format": self._format, "load_args": self._load_args}

    def _exists(self) -> bool:
        return self._path.is_file()
