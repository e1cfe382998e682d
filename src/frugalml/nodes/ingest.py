"""Parse raw RFC 822 e-mail into a typed table, quarantining what cannot be used.

Notation: N raw message files in; N = parsed + quarantined, always (nothing is dropped silently).
Every parsed row keeps the digest of the archive it came from, so any model traces back to its bytes.
"""

from __future__ import annotations

import email
import hashlib
import logging
import re
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from frugalml.params import IngestParams, parse_params

logger = logging.getLogger(__name__)

EMAIL_COLUMNS = [
    "email_id", "archive", "archive_sha256", "member", "group", "era", "label",
    "from_addr", "to_addr", "reply_to", "subject", "date", "message_id", "in_reply_to", "list_id",
    "received_count", "content_type", "header_text", "body", "html_only", "attachment_count",
    "url_count", "raw_size", "header_count", "defect_count", "charset_fallback", "body_truncated",
    "checksum_ok",
]  # fmt: skip
QUARANTINE_COLUMNS = ["email_id", "archive", "archive_sha256", "member", "group", "reason", "raw_size", "raw"]

_URL = re.compile(rb"(?:https?://|www\.)[^\s\"'<>]+", re.IGNORECASE)
_BLOCK_TAGS = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "hr"}
_SKIP_TAGS = {"script", "style", "head", "title"}
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


class _HTMLText(HTMLParser):
    """Collects visible text; block tags become line breaks, script/style are skipped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS and self._skip:
            self._skip -= 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Convert HTML to readable plain text.

    Args:
        html: An HTML document or fragment (malformed markup is tolerated).

    Returns:
        The visible text, with block elements on their own lines and runs of blanks collapsed.
    """
    parser = _HTMLText()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):  # pathological markup: keep what was collected
        pass
    return normalise_whitespace("".join(parser.parts))


def normalise_whitespace(text: str) -> str:
    """Collapse runs of spaces and blank lines.

    Args:
        text: Any text.

    Returns:
        The text with single spaces and at most one blank line in a row, stripped.
    """
    lines = (_SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def decode_header_value(value: Any) -> str:
    """Decode an RFC 2047 header value (``=?charset?b?...?=``), tolerating bad charsets.

    Args:
        value: The raw header value (``str`` or ``email.header.Header``), or ``None``.

    Returns:
        The decoded text (empty when absent).
    """
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value)))).strip()
    except (LookupError, UnicodeError, ValueError, email.errors.HeaderParseError):
        pieces = []
        for chunk, _charset in decode_header(str(value)):
            if isinstance(chunk, bytes):
                pieces.append(chunk.decode("latin-1", errors="replace"))
            else:
                pieces.append(chunk)
        return "".join(pieces).strip()


def decode_payload(part: Message) -> tuple[str, bool]:
    """Decode one MIME part's payload (quoted-printable/base64 and its charset).

    Args:
        part: A non-multipart message part.

    Returns:
        The text, and whether a fallback charset had to be used (unknown or lying declared charset).
    """
    payload = part.get_payload(decode=True)
    if payload is None:
        return "", False
    if isinstance(payload, str):  # pragma: no cover - compat32 returns bytes for decode=True
        return payload, False
    charset = part.get_content_charset() or "us-ascii"
    try:
        return payload.decode(charset), False
    except (LookupError, UnicodeDecodeError):
        pass
    try:
        return payload.decode("utf-8"), True
    except UnicodeDecodeError:
        return payload.decode("cp1252", errors="replace"), True


def parse_message(raw: bytes, *, max_body_chars: int = 200_000) -> dict[str, Any]:
    """Parse one raw message into header fields, decoded body text and counts.

    Args:
        raw: The message bytes as stored in the corpus (headers, blank line, body).
        max_body_chars: The body is cut at this length (``body_truncated`` records it).

    Returns:
        A dict with the header and body columns of :data:`EMAIL_COLUMNS`.
    """
    message = email.message_from_bytes(raw, policy=policy.compat32)
    plain, html = [], []
    attachments = 0
    charset_fallback = False
    for part in message.walk():
        if part.is_multipart():
            continue
        maintype = part.get_content_maintype()
        disposition = (part.get("Content-Disposition") or "").lower()
        if maintype != "text" or "attachment" in disposition or part.get_filename():
            attachments += 1
            continue
        text, fallback = decode_payload(part)
        charset_fallback |= fallback
        (html if part.get_content_subtype() == "html" else plain).append(text)
    plain_text = normalise_whitespace("\n".join(plain))
    html_only = not plain_text and bool(html)
    body = plain_text if plain_text else html_to_text("\n".join(html))
    truncated = len(body) > max_body_chars
    date = pd.NaT
    try:
        parsed_date = parsedate_to_datetime(message.get("Date", ""))
        if parsed_date is not None:
            date = (
                pd.Timestamp(parsed_date).tz_convert("UTC")
                if parsed_date.tzinfo
                else pd.Timestamp(parsed_date).tz_localize("UTC")
            )
    except (TypeError, ValueError, IndexError, OverflowError):
        pass
    header_lines = [f"{name}: {decode_header_value(value)}" for name, value in message.items()]
    body_bytes = raw.split(b"\n\n", 1)[-1] if message.keys() else raw

    def address(name: str) -> str:
        pairs = getaddresses([decode_header_value(v) for v in message.get_all(name, [])])
        return ", ".join(addr for _, addr in pairs if addr)

    return {
        "from_addr": address("From"),
        "to_addr": address("To"),
        "reply_to": address("Reply-To"),
        "subject": normalise_whitespace(decode_header_value(message.get("Subject"))),
        "date": date,
        "message_id": decode_header_value(message.get("Message-ID")),
        "in_reply_to": decode_header_value(message.get("In-Reply-To")),
        "list_id": decode_header_value(message.get("List-Id")),
        "received_count": len(message.get_all("Received", [])),
        "content_type": message.get_content_type(),
        "header_text": "\n".join(header_lines),
        "body": body[:max_body_chars],
        "html_only": html_only,
        "attachment_count": attachments,
        "url_count": len(_URL.findall(body_bytes)),
        "raw_size": len(raw),
        "header_count": len(message.keys()),
        "defect_count": sum(len(part.defects) for part in message.walk()),
        "charset_fallback": charset_fallback,
        "body_truncated": truncated,
    }


def label_from_group(group: str) -> int:
    """SpamAssassin corpus label: groups named ``spam*`` are spam (1), the rest ham (0).

    Args:
        group: A corpus group such as ``easy-ham-1`` or ``spam-2``.

    Returns:
        1 for spam, 0 for ham.
    """
    return int(group.lower().startswith("spam"))


def era_from_group(group: str) -> int:
    """The collection era of a corpus group (``*-1`` = 1, ``*-2`` = 2; 0 when unknown).

    Args:
        group: A corpus group.

    Returns:
        The era number.
    """
    tail = group.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


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
    parsed: list[dict[str, Any]] = []
    quarantined: list[dict[str, Any]] = []
    for row in tqdm(raw_messages.itertuples(index=False), total=len(raw_messages), desc="parse e-mail"):
        raw: bytes = row.raw
        base = {
            "email_id": hashlib.sha256(raw).hexdigest()[:20],
            "archive": row.archive,
            "archive_sha256": row.archive_sha256,
            "member": row.member,
            "group": row.group,
        }
        if not raw.strip():
            quarantined.append({**base, "reason": "empty_message", "raw_size": len(raw), "raw": raw})
            continue
        try:
            fields = parse_message(raw, max_body_chars=config.max_body_chars)
        except Exception as error:  # noqa: BLE001 - any parser failure is quarantined, not fatal
            reason = f"parse_error: {type(error).__name__}: {error}"[:300]
            quarantined.append({**base, "reason": reason, "raw_size": len(raw), "raw": raw})
            continue
        text_chars = len(fields["subject"].strip()) + len(fields["body"].strip())
        if text_chars < max(config.min_text_chars, 1):
            reason = "no_text: no subject and no decodable text body"
            if fields["attachment_count"]:
                reason += f" ({fields['attachment_count']} non-text attachment(s) only)"
            quarantined.append({**base, "reason": reason, "raw_size": len(raw), "raw": raw})
            continue
        checksum_ok = (
            not config.verify_message_checksums
            or row.expected_md5 is None
            or hashlib.md5(raw).hexdigest() == row.expected_md5  # noqa: S324
        )
        parsed.append(
            {
                **base,
                "era": era_from_group(row.group),
                "label": label_from_group(row.group),
                **fields,
                "checksum_ok": checksum_ok,
                "_raw": raw,
            }
        )

    emails = pd.DataFrame(parsed, columns=[*EMAIL_COLUMNS, "_raw"])
    if config.dedup_on != "none" and len(emails):
        keys = (
            emails["email_id"]
            if config.dedup_on == "raw"
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
        emails = emails.loc[~duplicate]
    emails = emails.drop(columns="_raw").reset_index(drop=True)
    emails["date"] = pd.to_datetime(emails["date"], utc=True)
    quarantine = pd.DataFrame(quarantined, columns=QUARANTINE_COLUMNS)

    reasons = quarantine["reason"].str.split(":", n=1).str[0].value_counts()
    metrics = {
        "messages_read": len(raw_messages),
        "emails_parsed": len(emails),
        "emails_quarantined": len(quarantine),
        "spam": int(emails["label"].sum()),
        "ham": int((emails["label"] == 0).sum()),
        "html_only": int(emails["html_only"].sum()),
        "charset_fallback": int(emails["charset_fallback"].sum()),
        "checksum_mismatch": int((~emails["checksum_ok"]).sum()),
        **{f"quarantine_{reason}": int(count) for reason, count in reasons.items()},
    }
    if metrics["messages_read"] != metrics["emails_parsed"] + metrics["emails_quarantined"]:
        raise AssertionError("ingest lost rows: read != parsed + quarantined")  # invariant, never expected
    logger.info(
        "ingest: %d read, %d parsed, %d quarantined (%s)",
        metrics["messages_read"],
        metrics["emails_parsed"],
        metrics["emails_quarantined"],
        dict(reasons),
    )
    return emails, quarantine, {k: {"value": float(v), "step": 0} for k, v in metrics.items()}
