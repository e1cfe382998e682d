"""Seeded corrupted copies of a parsed e-mail batch, one per bad-input class of the quality-gate issue.

Each maker returns ``(corrupted_copy, expected, corrupted_ids)``: ``expected`` is ``"stop"`` (the gate must
stop the run) or ``"quarantine"`` (the gate must quarantine exactly ``corrupted_ids`` and go on).
Used by ``benchmarks.quality`` and by the tests.

:data:`ARCHIVE_INPUTS` and :data:`TABLE_INPUTS` are the messy inputs of issue 14 that reach the pipeline
before any gate: archives with stray members or unknown folders, hostile messages, and user tables (missing
text column, ragged CSV, wrong encoding, duplicates, one class, an unlabelled row, binary cells).
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

Corruption = tuple[pd.DataFrame, str, set[str]]


def _pick(frame: pd.DataFrame, share: float, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(len(frame), size=max(1, round(len(frame) * share)), replace=False)


def _ids(frame: pd.DataFrame, rows: np.ndarray) -> set[str]:
    return set(frame["email_id"].iloc[rows])


def empty(frame: pd.DataFrame, rng: np.random.Generator) -> Corruption:
    return frame.iloc[:0].copy(), "stop", set()


def null_text(frame: pd.DataFrame, rng: np.random.Generator) -> Corruption:
    out, rows = frame.copy(), _pick(frame, 0.01, rng)
    out["body"] = out["body"].astype(object)
    out.iloc[rows, out.columns.get_loc("body")] = None
    return out, "quarantine", _ids(frame, rows)


def whitespace_text(frame: pd.DataFrame, rng: np.random.Generator) -> Corruption:
    out, rows = frame.copy(), _pick(frame, 0.01, rng)
    out.iloc[rows, out.columns.get_loc("subject")] = "   "
    out.iloc[rows, out.columns.get_loc("body")] = " \n\t \n"
    return out, "quarantine", _ids(frame, rows)


def non_utf8_bytes(frame: pd.DataFrame, rng: np.random.Generator) -> Corruption:
    out, rows = frame.copy(), _pick(frame, 0.01, rng)
    out["body"] = out["body"].astype(object)
    for row in rows:
        out.iat[row, out.columns.get_loc("body")] = b"\xff\xfe" + str(frame["body"].iat[row]).encode("utf-16-le")
    return out, "quarantine", _ids(frame, rows)


def huge_message(frame: pd.DataFrame, rng: np.random.Generator) -> Corruption:
    out, rows = frame.copy(), _pick(frame, 0.0, rng)[:1]
    out.iloc[rows, out.columns.get_loc("body")] = "buy now " * (10 * 1024 * 1024 // 8)  # 10 MB of text
    return out, "quarantine", _ids(frame, rows)


def duplicate_ids(frame: pd.DataFrame, rng: np.random.Generator) -> Corruption:
    out, rows = frame.copy(), _pick(frame, 0.01, rng)
    out.iloc[rows, out.columns.get_loc("email_id")] = frame["email_id"].iloc[(rows + 1) % len(frame)].to_numpy()
    return out, "stop", set()


def labels_outside_set(frame: pd.DataFrame, rng: np.random.Generator) -> Corruption:
    out, rows = frame.copy(), _pick(frame, 0.01, rng)
    out.iloc[rows, out.columns.get_loc("label")] = 2
    return out, "quarantine", _ids(frame, rows)


def renamed_or_missing_column(frame: pd.DataFrame, rng: np.random.Generator) -> Corruption:
    return frame.rename(columns={"body": "text"}).drop(columns=["subject"]), "stop", set()


def wrong_dtypes(frame: pd.DataFrame, rng: np.random.Generator) -> Corruption:
    out = frame.copy()
    out["label"] = out["label"].map({0: "ham", 1: "spam"})
    return out, "stop", set()


def one_class(frame: pd.DataFrame, rng: np.random.Generator) -> Corruption:
    return frame[frame["label"] == 0].copy(), "stop", set()


def _mixed_failures(frame: pd.DataFrame, rng: np.random.Generator, share: float) -> tuple[pd.DataFrame, set[str]]:
    out, rows = frame.copy(), _pick(frame, share, rng)
    out["body"] = out["body"].astype(object)
    for number, row in enumerate(rows):
        kind = number % 3
        if kind == 0:
            out.iat[row, out.columns.get_loc("body")] = None
        elif kind == 1:
            out.iat[row, out.columns.get_loc("subject")] = ""
            out.iat[row, out.columns.get_loc("body")] = "  "
        else:
            out.iat[row, out.columns.get_loc("label")] = -1
    return out, _ids(frame, rows)


def sixty_percent_fail(frame: pd.DataFrame, rng: np.random.Generator) -> Corruption:
    out, _ = _mixed_failures(frame, rng, 0.60)
    return out, "stop", set()


def two_percent_fail(frame: pd.DataFrame, rng: np.random.Generator) -> Corruption:
    out, ids = _mixed_failures(frame, rng, 0.02)
    return out, "quarantine", ids


CORRUPTIONS: dict[str, Callable[[pd.DataFrame, np.random.Generator], Corruption]] = {
    "empty_dataset": empty,
    "null_text": null_text,
    "whitespace_text": whitespace_text,
    "non_utf8_bytes": non_utf8_bytes,
    "10mb_message": huge_message,
    "duplicate_ids": duplicate_ids,
    "labels_outside_set": labels_outside_set,
    "renamed_or_missing_column": renamed_or_missing_column,
    "wrong_dtypes": wrong_dtypes,
    "all_one_class": one_class,
    "60pct_rows_fail": sixty_percent_fail,
    "2pct_rows_fail": two_percent_fail,
}


# --- messy inputs before the gate (issue 14): archives, hostile messages, user tables ---------------------
# Each maker writes its input under `workdir` (or returns a frame) and says what must happen: "handled" (every
# member/row ends parsed, validated or quarantined, and `check` holds on the outputs) or "stop" (a named error
# whose message matches `match`, before any output). Used by benchmarks.quality and tests/test_benchmark_quality.py.
TABLE_SCHEMA = {"text_columns": ["message"], "label_column": "category", "id_column": None, "group_column": None,
                "label_names": ["ok", "abuse"]}  # fmt: skip


@dataclass
class MessyInput:
    """One messy input and what must become of it."""

    stage: Literal["archive", "raw", "table"]
    data: Any  # archive path (archive), raw-message frame (raw), table file (table)
    expected: Literal["handled", "stop"]
    rows_in: int = 0  # members / rows that must each be accounted for (handled inputs)
    match: str | None = None  # regex the stop error's message must match
    load_args: dict[str, Any] = field(default_factory=dict)
    check: Callable[[dict[str, Any]], bool] | None = None  # on the outputs of a handled input


def _tar_add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def _stdlib_archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        _tar_add(archive, "package/package.json", b'{"name": "messy"}')  # a packaging file the layout declares
        for name, data in members.items():
            _tar_add(archive, name, data)
    return path


def _message_name(group: str, number: int, raw: bytes) -> str:
    return f"package/data/{group}/{number:05d}.{hashlib.md5(raw).hexdigest()}.txt"  # noqa: S324


def _sample_raw(raw: pd.DataFrame, rng: np.random.Generator, n: int) -> pd.DataFrame:
    return raw.iloc[np.sort(rng.choice(len(raw), size=min(n, len(raw)), replace=False))]


def unmatched_member_names(raw: pd.DataFrame, rng: np.random.Generator, workdir: Path) -> MessyInput:
    rows = _sample_raw(raw, rng, 40)
    members, stray = {}, 0
    for number, (group, data) in enumerate(zip(rows["group"], rows["raw"]), start=1):
        if number % 8 == 0:  # renamed: .eml, no md5, nested one folder too deep, outside any group folder
            kind = (number // 8) % 4
            name = [f"package/data/{group}/{number}.eml", f"package/data/{group}/{number:05d}.mail",
                    f"package/data/{group}/old/{number:05d}.txt", f"package/{number:05d}.txt"][kind]  # fmt: skip
            stray += 1
        else:
            name = _message_name(group, number, data)
        members[name] = data
    path = _stdlib_archive(workdir / "unmatched_member_names.tgz", members)

    def check(out: dict[str, Any]) -> bool:
        return int(out["quarantine"]["reason"].str.startswith("unexpected_member").sum()) == stray

    return MessyInput("archive", path, "handled", rows_in=len(members), check=check)


def non_spam_folder_names(raw: pd.DataFrame, rng: np.random.Generator, workdir: Path) -> MessyInput:
    rows = _sample_raw(raw, rng, 40)
    folders = {"easy-ham-1": "inbox", "spam-1": "Junk", "hard-ham-1": "easy-ham-1", "easy-ham-2": "easy-ham-2",
               "spam-2": "spam-2"}  # fmt: skip
    members = {_message_name(folders[g], n, d): d for n, (g, d) in enumerate(zip(rows["group"], rows["raw"]), 1)}
    moved = sum(folders[g] in ("inbox", "Junk") for g in rows["group"])
    path = _stdlib_archive(workdir / "non_spam_folder_names.tgz", members)

    def check(out: dict[str, Any]) -> bool:
        unlabelled = out["quarantine"]["reason"].str.startswith("unlabelled_group").sum()
        return int(unlabelled) == moved and not out["emails"]["group"].isin(["inbox", "Junk"]).any()

    return MessyInput("archive", path, "handled", rows_in=len(members), check=check)


def header_injection(raw: pd.DataFrame, rng: np.random.Generator, workdir: Path) -> MessyInput:
    rows = _sample_raw(raw, rng, 30).copy()
    injected = "Great offer\r\nX-Priority: 1\r\nBcc: victim@example.com\r\nList-Id: <fake.list>"
    word = b"=?utf-8?b?" + base64.b64encode(injected.encode()) + b"?="

    def inject(data: bytes) -> bytes:
        head, _, body = data.partition(b"\n\n")
        kept = [line for line in head.split(b"\n") if not line.lower().startswith(b"subject:")]
        return b"\n".join([*kept, b"Subject: " + word]) + b"\n\n" + body

    original = rows.copy()
    rows["raw"] = rows["raw"].map(inject)
    rows["expected_md5"] = None

    def check(out: dict[str, Any]) -> bool:
        from frugalml.nodes.ingest import parse_emails
        from frugalml.nodes.lf_library import lf_view

        emails = out["emails"]
        lines_ok = (emails["header_text"].str.count("\n") + 1 == emails["header_count"]).all()
        starts = emails["header_text"].str.contains(r"(?m)^(?:Bcc: victim|List-Id: <fake)", regex=True)
        in_subject = emails["subject"].str.contains("X-Priority: 1", regex=False).all()
        before = lf_view(parse_emails(original, {"dedup_on": "none"})[0], ["subject", "body"]).set_index("member")
        after = lf_view(emails, ["subject", "body"]).set_index("member")
        steered = (after["lf_priority"] != before.loc[after.index, "lf_priority"]).any() or (
            after["lf_list_headers"] != before.loc[after.index, "lf_list_headers"]
        ).any()  # the header LFs see the same headers as without the injection
        return bool(lines_ok and not starts.any() and in_subject and not steered)

    return MessyInput("raw", rows, "handled", rows_in=len(rows), check=check)


def binary_and_nul_bodies(raw: pd.DataFrame, rng: np.random.Generator, workdir: Path) -> MessyInput:
    rows = _sample_raw(raw, rng, 30).copy()
    binary = 0

    def body_of(data: bytes, payload: bytes) -> bytes:
        head = data.partition(b"\n\n")[0]
        kept = [line for line in head.split(b"\n") if not line.lower().startswith((b"content-", b"mime-version"))
                and not line.startswith((b" ", b"\t"))]  # fmt: skip
        return b"\n".join([*kept, b"MIME-Version: 1.0", b"Content-Type: text/plain; charset=utf-8"]) + b"\n\n" + payload

    new = []
    for number, data in enumerate(rows["raw"]):
        if number % 3 == 0:
            new.append(body_of(data, rng.bytes(2000)))  # binary garbage as a text body
            binary += 1
        elif number % 3 == 1:
            new.append(body_of(data, b"Hello,\x00 this is\x00 a note\x1b with stray NULs and ESCs, fine otherwise."))
        else:
            new.append(data)
    rows["raw"], rows["expected_md5"] = new, None

    def check(out: dict[str, Any]) -> bool:
        quarantined = int(out["quarantine"]["reason"].str.startswith("binary_body").sum())
        clean = not out["emails"]["body"].str.contains("[\x00-\x08\x0e-\x1f\x7f]", regex=True).any()
        return quarantined == binary and clean

    return MessyInput("raw", rows, "handled", rows_in=len(rows), check=check)


def _tickets(emails: pd.DataFrame) -> pd.DataFrame:
    text = (emails["subject"] + "\n" + emails["body"]).str.slice(0, 2000)
    return pd.DataFrame({"message": text.to_numpy(), "category": emails["label"].map({0: "ok", 1: "abuse"}).to_numpy()})


def missing_text_column(emails: pd.DataFrame, rng: np.random.Generator, workdir: Path) -> MessyInput:
    path = workdir / "missing_text_column.csv"
    _tickets(emails).rename(columns={"message": "text"}).to_csv(path, index=False)
    return MessyInput("table", path, "stop", match=r"lacks column\(s\) \['message'\].*text column 'message'")


def ragged_csv(emails: pd.DataFrame, rng: np.random.Generator, workdir: Path) -> MessyInput:
    path = workdir / "ragged.csv"
    table = _tickets(emails).head(60)
    words = table["message"].str.findall(r"[A-Za-z]+").str.join(" ")
    path.write_text("message,category\n" + "".join(f"Ticket {i}, {w},{c}\n" for i, (w, c) in
                                                   enumerate(zip(words, table["category"]))))  # fmt: skip
    return MessyInput("table", path, "stop", match=r"ragged.csv: 60 of 60 rows do not have the header's 2 fields")


def wrong_encoding(emails: pd.DataFrame, rng: np.random.Generator, workdir: Path) -> MessyInput:
    path = workdir / "cp1252.csv"
    table = _tickets(emails)
    table["message"] = table["message"].str.encode("cp1252", errors="ignore").str.decode("cp1252")
    table.loc[table.index[:5], "message"] = "Caf\u00e9 \u201cdeals\u201d \u2013 " + table["message"].iloc[:5]
    table.to_csv(path, index=False, encoding="cp1252")
    return MessyInput("table", path, "stop", match=r"load_args: \{encoding: cp1252\}")


def duplicate_rows(emails: pd.DataFrame, rng: np.random.Generator, workdir: Path) -> MessyInput:
    path = workdir / "duplicates.csv"
    table = _tickets(emails)
    copies = table.iloc[rng.choice(len(table), size=max(2, len(table) // 10), replace=False)]
    shouted = copies.assign(message=copies["message"].str.upper())
    messy = pd.concat([table, copies, shouted], ignore_index=True).sample(frac=1, random_state=0)
    messy.to_csv(path, index=False)

    def check(out: dict[str, Any]) -> bool:
        def norm(frame: pd.DataFrame) -> set[str]:
            return set(frame["message"].str.lower().str.split().str.join(" "))

        duplicates = out["validation_quarantine"]["reason"].str.startswith("duplicate").sum()
        train = pd.concat([out["train"], out["dev"], out["dev_gold"]])
        return int(duplicates) >= 2 * len(copies) and not norm(train) & norm(out["test"])

    return MessyInput("table", path, "handled", rows_in=len(messy), check=check)


def one_class_table(emails: pd.DataFrame, rng: np.random.Generator, workdir: Path) -> MessyInput:
    path = workdir / "one_class.csv"
    table = _tickets(emails)
    table[table["category"] == "ok"].to_csv(path, index=False)
    return MessyInput("table", path, "stop", match=r"one class.*add rows of the missing class")


def unlabelled_row(emails: pd.DataFrame, rng: np.random.Generator, workdir: Path) -> MessyInput:
    path = workdir / "unlabelled_row.csv"
    table = _tickets(emails)
    table.loc[table.index[int(rng.integers(len(table)))], "category"] = None
    table.to_csv(path, index=False)

    def check(out: dict[str, Any]) -> bool:
        return len(out["pool"]) == 1 and len(out["weak_labels"]) + len(out["weak_abstained"]) == 1

    return MessyInput("table", path, "handled", rows_in=len(table), check=check)


def binary_text_cells(emails: pd.DataFrame, rng: np.random.Generator, workdir: Path) -> MessyInput:
    path = workdir / "binary_cells.parquet"
    table = _tickets(emails)
    rows = rng.choice(len(table), size=3, replace=False)
    for row in rows:
        table.iat[row, 0] = rng.bytes(1500).decode("latin-1")  # binary pasted into a text cell
    table.iat[int((rows.max() + 1) % len(table)), 0] += "\x00\x00"  # isolated NULs: stripped, row kept
    table.to_parquet(path)

    def check(out: dict[str, Any]) -> bool:
        binary = out["validation_quarantine"]["reason"].str.startswith("binary_text").sum()
        return int(binary) == len(rows) and not out["validated"]["message"].str.contains("\x00", regex=False).any()

    return MessyInput("table", path, "handled", rows_in=len(table), check=check)


ARCHIVE_INPUTS: dict[str, Callable[[pd.DataFrame, np.random.Generator, Path], MessyInput]] = {
    "unmatched_member_names": unmatched_member_names,
    "non_spam_folder_names": non_spam_folder_names,
    "header_injection": header_injection,
    "binary_and_nul_bodies": binary_and_nul_bodies,
}  # makers given raw corpus messages (frugalml.datasets.MailCorpusDataset rows)
TABLE_INPUTS: dict[str, Callable[[pd.DataFrame, np.random.Generator, Path], MessyInput]] = {
    "missing_text_column": missing_text_column,
    "ragged_csv": ragged_csv,
    "wrong_encoding": wrong_encoding,
    "duplicate_rows": duplicate_rows,
    "one_class_table": one_class_table,
    "unlabelled_row": unlabelled_row,
    "binary_text_cells": binary_text_cells,
}  # makers given parsed e-mails, turned into a user's (message, category ok/abuse) table
