"""Parse raw RFC 822 e-mail into a typed table, quarantining what cannot be used.

Notation: N raw message files in; N = parsed + quarantined, always (nothing is dropped silently).
Every parsed row keeps the digest of the archive it came from, so any model traces back to its bytes.

Rules the parser enforces (each a quarantine ``reason`` or a cleaning step, never a silent drop):

* a member of the archive that is not a message of its layout: ``unexpected_member``;
* the label comes from the corpus folder by ``ingest.label_rule`` (pattern -> label); a folder matching
  no pattern, or patterns of two labels, is ``unlabelled_group`` / ``ambiguous_group`` (never ham by default);
* decoded header values never carry line breaks or other control characters into derived fields
  (``subject``, ``from_addr``, ``header_text``, ...): an RFC 2047 word that decodes to CR/LF plus ``Bcc:``
  stays inside its own header's line;
* a body with more than ``ingest.max_control_share`` control or undecodable characters is ``binary_body``;
  fewer, isolated ones (NUL, ESC, ...) are stripped and counted in ``control_chars_stripped``.
"""

from frugalml.nodes.ingest.labels import era_from_group, label_from_group
from frugalml.nodes.ingest.mime import (
    CONTROL_CHARACTERS,
    EMAIL_COLUMNS,
    MIN_CONTROL_BASE,
    QUARANTINE_COLUMNS,
    decode_header_value,
    decode_payload,
    html_to_text,
    normalise_whitespace,
    one_line,
    parse_message,
    strip_control,
)
from frugalml.nodes.ingest.node import parse_emails, sample_messages

__all__ = [
    "CONTROL_CHARACTERS",
    "EMAIL_COLUMNS",
    "MIN_CONTROL_BASE",
    "QUARANTINE_COLUMNS",
    "decode_header_value",
    "decode_payload",
    "era_from_group",
    "html_to_text",
    "label_from_group",
    "normalise_whitespace",
    "one_line",
    "parse_emails",
    "parse_message",
    "sample_messages",
    "strip_control",
]
