"""RFC 822 parsing: headers decoded without control characters, bodies decoded (quoted-printable, base64,
charsets, HTML -> text), and the counts the features use."""

from __future__ import annotations

import codecs
import email
import logging
import re
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any

import pandas as pd

logger = logging.getLogger("frugalml.nodes.ingest")

EMAIL_COLUMNS = [
    "email_id", "archive", "archive_sha256", "member", "group", "era", "label",
    "from_addr", "to_addr", "reply_to", "subject", "date", "message_id", "in_reply_to", "list_id",
    "received_count", "content_type", "header_text", "body", "html_only", "attachment_count",
    "url_count", "raw_size", "header_count", "defect_count", "charset_fallback", "body_truncated",
    "control_chars_stripped", "checksum_ok",
]  # fmt: skip
QUARANTINE_COLUMNS = ["email_id", "archive", "archive_sha256", "member", "group", "reason", "raw_size", "raw"]

_URL = re.compile(rb"(?:https?://|www\.)[^\s\"'<>]+", re.IGNORECASE)
_BLOCK_TAGS = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "hr"}
_SKIP_TAGS = {"script", "style", "head", "title"}
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")
# Unicode Cc (C0, DEL, C1), lone surrogates and the line/paragraph separators: never inside a header value
_HEADER_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")
# the same in a body, except the whitespace controls (tab, line feed, vertical tab, form feed, carriage return)
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
MIN_CONTROL_BASE = 100  # shares of control characters are counted over at least this many characters
# bytes 0x80-0x9f of text labelled ISO-8859-1 are Windows-1252 punctuation (the WHATWG encoding standard reads
# the label so): curly quotes and dashes, not C1 control characters
_C1_AS_CP1252 = {
    code: char for code in range(0x80, 0xA0) if (char := bytes([code]).decode("cp1252", errors="replace")) != "\ufffd"
}


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


def _is_latin1(charset: str | None) -> bool:
    try:
        return charset is not None and codecs.lookup(charset).name == "iso8859-1"
    except LookupError:
        return False


def one_line(text: str) -> str:
    """A header value on one line: control characters and line breaks become spaces, blanks collapse.

    Folded headers are unfolded (RFC 5322 section 2.2.3), and an encoded word that decodes to CR/LF plus
    ``Bcc: ...`` can no longer start a line of its own in ``header_text``.

    Args:
        text: A decoded header value.

    Returns:
        The value without control characters, line or paragraph separators, on one line, stripped.
    """
    return " ".join(_HEADER_CONTROL.sub(" ", text).split())


def strip_control(text: str, *, max_share: float) -> tuple[str, int, float]:
    """Remove isolated control characters from a text, and measure how much of it is not text.

    Counted as not text: Unicode control characters other than tab, line feed, vertical tab, form feed and
    carriage return (NUL, ESC, DEL, C1 controls), lone surrogates and U+FFFD (bytes that no charset decoded).
    The share is over the text's length, but at least 100 characters, so that one stray NUL in a short text
    is stripped rather than judged.

    Args:
        text: Decoded text.
        max_share: Above this share the text counts as binary (``ingest.max_control_share``,
            ``data.max_control_share``).

    Returns:
        The text with those control characters removed (U+FFFD is kept as the trace of undecodable bytes),
        how many were removed, and the share of non-text characters (the caller quarantines the text when
        it is above ``max_share``).
    """
    cleaned, removed = CONTROL_CHARACTERS.subn("", text)
    share = (removed + text.count("\ufffd")) / max(len(text), MIN_CONTROL_BASE)
    if removed:
        cleaned = normalise_whitespace(cleaned) if share <= max_share else cleaned
    return cleaned, removed, share


def _decode_chunk(chunk: bytes | str, charset: str | None) -> str:
    if isinstance(chunk, str):
        return chunk
    if _is_latin1(charset):
        return chunk.decode("latin-1").translate(_C1_AS_CP1252)
    try:
        return chunk.decode(charset or "us-ascii")
    except (LookupError, UnicodeDecodeError):
        try:
            return chunk.decode("utf-8")
        except UnicodeDecodeError:
            return chunk.decode("cp1252", errors="replace")


def _relabel(chunk: bytes | str, charset: str | None) -> tuple[bytes | str, str | None]:
    """ISO-8859-1 words are read as Windows-1252 (as bodies are), and raw 8-bit header bytes (compat32's
    ``unknown-8bit``) as UTF-8 or else Windows-1252, instead of U+FFFD; both re-labelled UTF-8 for make_header."""
    if not isinstance(chunk, bytes):
        return chunk, charset
    if _is_latin1(charset):
        return chunk.decode("latin-1").translate(_C1_AS_CP1252).encode("utf-8"), "utf-8"
    if (charset is None or charset == "unknown-8bit") and not chunk.isascii():
        try:
            return chunk.decode("utf-8").encode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return chunk.decode("cp1252", errors="replace").encode("utf-8"), "utf-8"
    return chunk, charset


def decode_header_value(value: Any) -> str:
    """Decode an RFC 2047 header value (``=?charset?b?...?=``), tolerating bad charsets, on one line.

    Args:
        value: The raw header value (``str`` or ``email.header.Header``), or ``None``.

    Returns:
        The decoded text (empty when absent), without line breaks or control characters (:func:`one_line`).
    """
    if value is None:
        return ""
    try:
        chunks = decode_header(value)  # a compat32 Header (raw 8-bit bytes) keeps its bytes; a str is parsed
    except (ValueError, email.errors.HeaderParseError):
        return one_line(str(value))
    chunks = [_relabel(chunk, charset) for chunk, charset in chunks]
    try:
        return one_line(str(make_header(chunks)))
    except (LookupError, UnicodeError, ValueError, email.errors.HeaderParseError):
        return one_line(" ".join(_decode_chunk(chunk, charset) for chunk, charset in chunks))


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
    if not isinstance(payload, bytes):  # pragma: no cover - a multipart container has no payload of its own
        return "", False
    charset = part.get_content_charset() or "us-ascii"
    if _is_latin1(charset):
        return payload.decode("latin-1").translate(_C1_AS_CP1252), False
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
    plain: list[str] = []
    html: list[str] = []
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
        return one_line(", ".join(addr for _, addr in pairs if addr))

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
