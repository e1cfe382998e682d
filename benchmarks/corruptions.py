"""Seeded corrupted copies of a parsed e-mail batch, one per bad-input class of the quality-gate issue.

Each maker returns ``(corrupted_copy, expected, corrupted_ids)``: ``expected`` is ``"stop"`` (the gate must
stop the run) or ``"quarantine"`` (the gate must quarantine exactly ``corrupted_ids`` and go on).
Used by ``benchmarks.quality`` and by the tests.
"""

from __future__ import annotations

from collections.abc import Callable

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
