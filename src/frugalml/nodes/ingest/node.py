"""The ingest node: raw message files -> the ``emails`` table and its quarantine (N = parsed + quarantined)."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from frugalml.errors import ParameterError
from frugalml.nodes.ingest.labels import _label_outcome, era_from_group
from frugalml.nodes.ingest.mime import EMAIL_COLUMNS, QUARANTINE_COLUMNS, parse_message, strip_control
from frugalml.params import IngestParams, parse_params
from frugalml.tracking import as_metrics

logger = logging.getLogger("frugalml.nodes.ingest")


def _text_key(subject: str, body: str) -> str:
    normalised = " ".join(f"{subject}\n{body}".lower().split())
    return hashlib.sha256(normalised.encode("utf-8", errors="replace")).hexdigest()


def sample_messages(raw_messages: pd.DataFrame, *, n: int, seed: int) -> pd.DataFrame:
    """A fixed, seeded sample of raw messages, proportional to each group's size.

    Args:
        raw_messages: Frame from :class:`frugalml.datasets.MailCorpusDataset`.
        n: Rows wanted (at least one per group).
        seed: Random seed.

    Returns:
        The sampled rows, in their original order.
    """
    if n >= len(raw_messages):
        return raw_messages
    share = n / len(raw_messages)
    picks = [
        group.sample(n=max(1, round(len(group) * share)), random_state=seed)
        for _, group in raw_messages.groupby("group", sort=True)
    ]
    return raw_messages.loc[sorted(pd.concat(picks).index)]


def _group_outcomes(raw_messages: pd.DataFrame, rejected: pd.Series, config: IngestParams) -> dict[Any, Any]:
    """Each folder's (label, reason) under ``ingest.label_rule``; refuses a rule that labels no folder at all."""
    outcomes = {group: _label_outcome(group, config.label_rule) for group in raw_messages["group"].unique()}
    message_groups = set(raw_messages.loc[~rejected, "group"].unique())
    unlabelled = {g: reason for g, (label, reason) in outcomes.items() if label is None and g in message_groups}
    if message_groups and len(unlabelled) == len(message_groups):
        raise ParameterError(
            f"ingest.label_rule {config.label_rule} labels none of the corpus folders {sorted(map(str, unlabelled))}: "
            "no message could be labelled. Map each folder pattern to its label, e.g. "
            "ingest.label_rule: {'spam*': 1, '*ham*': 0}"
        )
    if unlabelled:
        counts = raw_messages.loc[~rejected, "group"].value_counts()
        logger.warning(
            "ingest: folders matched by no (or by conflicting) ingest.label_rule patterns are quarantined: %s",
            {str(g): int(counts.get(g, 0)) for g in unlabelled},
        )
    return outcomes


def _parse_row(row: Any, label: int, config: IngestParams) -> tuple[dict[str, Any] | None, str | None]:
    """One labelled message's fields, or None and the quarantine reason."""
    raw: bytes = row.raw
    if not raw.strip():
        return None, "empty_message"
    try:
        fields = parse_message(raw, max_body_chars=config.max_body_chars)
    except Exception as error:  # noqa: BLE001 - any parser failure is quarantined, not fatal
        return None, f"parse_error: {type(error).__name__}: {error}"[:300]
    body, stripped, share = strip_control(fields["body"], max_share=config.max_control_share)
    if share > config.max_control_share:
        return None, (
            f"binary_body: {share:.0%} of the body's {len(fields['body'])} characters are control or "
            f"undecodable characters (above ingest.max_control_share {config.max_control_share:.0%})"
        )
    fields["body"], fields["control_chars_stripped"] = body, stripped
    text_chars = len(fields["subject"].strip()) + len(fields["body"].strip())
    if text_chars < max(config.min_text_chars, 1):
        reason = "no_text: no subject and no decodable text body"
        if fields["attachment_count"]:
            reason += f" ({fields['attachment_count']} non-text attachment(s) only)"
        return None, reason
    checksum_ok = (
        not config.verify_message_checksums
        or row.expected_md5 is None
        or hashlib.md5(raw).hexdigest() == row.expected_md5  # noqa: S324
    )
    return {"era": era_from_group(row.group), "label": label, **fields, "checksum_ok": checksum_ok, "_raw": raw}, None


def _drop_duplicates(emails: pd.DataFrame, dedup_on: str, quarantined: list[dict[str, Any]]) -> pd.DataFrame:
    """Keep the first copy of each message (by raw digest or normalised text); later copies go to the quarantine."""
    if dedup_on == "none" or not len(emails):
        return emails
    keys = (
        emails["email_id"]
        if dedup_on == "raw"
        else pd.Series([_text_key(s, b) for s, b in zip(emails["subject"], emails["body"])])
    )
    first_id = pd.Series(emails["email_id"].values, index=keys.values).groupby(level=0).first()
    first_label = pd.Series(emails["label"].values, index=keys.values).groupby(level=0).first()
    duplicate = keys.duplicated(keep="first").to_numpy()
    for index in emails.index[duplicate]:
        key = keys.iloc[index]
        kind = "duplicate_label_conflict" if emails.at[index, "label"] != first_label[key] else "duplicate"
        quarantined.append(
            {
                **{c: emails.at[index, c] for c in ("email_id", "archive", "archive_sha256", "member", "group")},
                "reason": f"{kind}_of:{first_id[key]}",
                "raw_size": emails.at[index, "raw_size"],
                "raw": emails.at[index, "_raw"],
            }
        )
    return emails.loc[~duplicate]


def _ingest_figures(read: int, emails: pd.DataFrame, quarantine: pd.DataFrame) -> tuple[dict[str, int], pd.Series]:
    """The ingest counts (N read = parsed + quarantined) and the quarantine reasons' counts."""
    reasons = quarantine["reason"].str.split(":", n=1).str[0].value_counts()
    figures = {
        "messages_read": read,
        "emails_parsed": len(emails),
        "emails_quarantined": len(quarantine),
        "spam": int(emails["label"].sum()),
        "ham": int((emails["label"] == 0).sum()),
        "html_only": int(emails["html_only"].sum()),
        "charset_fallback": int(emails["charset_fallback"].sum()),
        "checksum_mismatch": int((~emails["checksum_ok"]).sum()),
        "control_chars_stripped": int(emails["control_chars_stripped"].sum()),
        **{f"quarantine_{reason}": int(count) for reason, count in reasons.items()},
    }
    if figures["messages_read"] != figures["emails_parsed"] + figures["emails_quarantined"]:
        raise AssertionError("ingest lost rows: read != parsed + quarantined")  # invariant, never expected
    return figures, reasons


def parse_emails(
    raw_messages: pd.DataFrame, params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Parse every raw message; quarantine unusable ones and duplicates with a reason.

    Args:
        raw_messages: One row per message file (columns of ``frugalml.datasets.corpus.RAW_COLUMNS``).
        params: ``params:ingest`` (see :class:`frugalml.params.IngestParams`).

    Returns:
        ``emails`` (:data:`EMAIL_COLUMNS`), ``emails_quarantine`` (:data:`QUARANTINE_COLUMNS`, raw bytes
        kept) and ingest metrics (counts, for MLflow).
    """
    config = parse_params(IngestParams, params, name="ingest")
    if config.sample is not None:
        raw_messages = sample_messages(raw_messages, n=config.sample.n, seed=config.sample.seed)
    rejected = (
        raw_messages["reject_reason"].notna()
        if "reject_reason" in raw_messages.columns
        else pd.Series(False, index=raw_messages.index)
    )
    outcomes = _group_outcomes(raw_messages, rejected, config)
    parsed: list[dict[str, Any]] = []
    quarantined: list[dict[str, Any]] = []
    for row in tqdm(raw_messages.itertuples(index=False), total=len(raw_messages), desc="parse e-mail"):
        raw: bytes = row.raw
        base = {
            "email_id": hashlib.sha256(raw or str(row.member).encode()).hexdigest()[:20],
            "archive": row.archive,
            "archive_sha256": row.archive_sha256,
            "member": row.member,
            "group": row.group,
        }
        reject = getattr(row, "reject_reason", None)
        label, reason = outcomes.get(row.group) or _label_outcome(row.group, config.label_rule)
        fields = None
        if isinstance(reject, str):
            reason = reject
        elif label is not None:
            fields, reason = _parse_row(row, label, config)
        if fields is None:
            quarantined.append({**base, "reason": reason, "raw_size": len(raw), "raw": raw})
        else:
            parsed.append({**base, **fields})

    emails = pd.DataFrame(parsed, columns=[*EMAIL_COLUMNS, "_raw"])
    emails = _drop_duplicates(emails, config.dedup_on, quarantined)
    emails = emails.drop(columns="_raw").reset_index(drop=True)
    emails["date"] = pd.to_datetime(emails["date"], utc=True)
    quarantine = pd.DataFrame(quarantined, columns=QUARANTINE_COLUMNS)
    metrics, reasons = _ingest_figures(len(raw_messages), emails, quarantine)
    logger.info(
        "ingest: %d read, %d parsed, %d quarantined (%s)",
        metrics["messages_read"],
        metrics["emails_parsed"],
        metrics["emails_quarantined"],
        dict(reasons),
    )
    return emails, quarantine, as_metrics(metrics)
