"""Parser tests on real messages of the corpus, plus the bad inputs the foundation issue lists."""

from __future__ import annotations

import base64
import re

import numpy as np
import pandas as pd
import pytest

from frugalml.errors import ParameterError, SchemaError
from frugalml.nodes.ingest import (
    EMAIL_COLUMNS,
    QUARANTINE_COLUMNS,
    html_to_text,
    label_from_group,
    parse_emails,
    parse_message,
)

HTML_ONLY = "package/data/spam-1/00001.7848dde101aa985090474a91ec93fcf0.txt"
MULTIPART = "package/data/easy-ham-2/00002.5a587ae61666c5aa097c8e866aedcc59.txt"
QUOTED_PRINTABLE = "package/data/spam-2/00012.cb9c9f2a25196f5b16512338625a85b4.txt"
LATIN1 = "package/data/easy-ham-2/00020.83ef024f76cc42b8245a683ed9b38406.txt"
BASE64 = "package/data/spam-1/00023.b6d27c684f5fc803cfa1060adb2d0805.txt"


def raw_of(raw_corpus: pd.DataFrame, member: str) -> bytes:
    return raw_corpus.loc[raw_corpus["member"] == member, "raw"].iloc[0]


def one_row(raw: bytes, group: str = "easy-ham-1", member: str = "x/00001.txt") -> pd.DataFrame:
    return pd.DataFrame(
        [{"archive": "t.tgz", "archive_sha256": "0" * 64, "group": group, "member": member,
          "expected_md5": None, "raw": raw}]
    )  # fmt: skip


def test_html_only_message_becomes_plain_text(raw_corpus):
    fields = parse_message(raw_of(raw_corpus, HTML_ONLY))
    assert fields["html_only"] is True
    assert fields["content_type"] == "text/html"
    assert "Life Insurance" in fields["body"]
    assert not re.search(r"<\s*(html|body|table|font|p|br)\b", fields["body"], re.IGNORECASE)


def test_multipart_counts_non_text_parts_and_keeps_the_text(raw_corpus):
    fields = parse_message(raw_of(raw_corpus, MULTIPART))
    assert fields["content_type"].startswith("multipart/")
    assert fields["attachment_count"] >= 1
    assert fields["subject"] == "Re: New Sequences Window"
    assert len(fields["body"]) > 100


def test_base64_body_is_decoded(raw_corpus):
    raw = raw_of(raw_corpus, BASE64)
    assert b"base64" in raw.lower()
    fields = parse_message(raw)
    assert "subscribers" in fields["body"]
    # decoded text is words, not a base64 blob
    assert not re.search(r"[A-Za-z0-9+/]{60,}", fields["body"])


def test_quoted_printable_soft_breaks_are_joined(raw_corpus):
    raw = raw_of(raw_corpus, QUOTED_PRINTABLE)
    split_words = re.findall(rb" ([a-z]{2,})=\n([a-z]{2,})", raw)
    assert split_words, "the fixture message has soft line breaks inside words"
    fields = parse_message(raw)
    for head, tail in split_words:
        assert (head + tail).decode() in fields["body"]
    assert "=3D" not in fields["body"]


def test_latin1_body_decodes_without_replacement_characters(raw_corpus):
    fields = parse_message(raw_of(raw_corpus, LATIN1))
    assert fields["charset_fallback"] is False
    assert "\ufffd" not in fields["body"]
    assert any(ord(ch) > 127 for ch in fields["body"])


def test_headers_are_extracted(raw_corpus):
    fields = parse_message(raw_of(raw_corpus, MULTIPART))
    assert fields["received_count"] > 0
    assert fields["message_id"].startswith("<")
    assert "@" in fields["from_addr"]
    assert fields["date"].year == 2002


def test_undecodable_charset_is_recovered_and_flagged(raw_corpus):
    raw = raw_of(raw_corpus, LATIN1).replace(b"iso-8859-1", b"x-no-such-charset", 1)
    raw = raw.replace(b"ISO-8859-1", b"x-no-such-charset", 1)
    fields = parse_message(raw)
    assert fields["charset_fallback"] is True
    assert "MacOSX" in fields["body"]


def test_no_headers_is_parsed_as_body():
    fields = parse_message(b"just some words without any header line\nsecond line\n")
    assert fields["header_count"] == 0
    assert "second line" in fields["body"]


def test_html_to_text_skips_scripts_and_unescapes():
    text = html_to_text("<html><style>p{}</style><script>evil()</script><p>Fish &amp; chips</p><br>now</html>")
    assert text in ("Fish & chips\n\nnow", "Fish & chips\nnow")


def test_label_from_group():
    assert [label_from_group(g) for g in ("spam-1", "spam-2", "easy-ham-1", "hard-ham-1")] == [1, 1, 0, 0]
    with pytest.raises(SchemaError, match="folder 'inbox' matches no ingest.label_rule pattern"):
        label_from_group("inbox")  # before issue 14: 0, ham
    assert label_from_group("Junk-2003", {"junk*": 1, "inbox*": 0}) == 1


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty_message"),
        (b"   \n\n  ", "empty_message"),
        (b"From: a@example.com\nSubject: \n\n", "no_text"),
    ],
)
def test_unusable_messages_are_quarantined_with_a_reason(raw, reason):
    emails, quarantine, metrics = parse_emails(one_row(raw), {})
    assert emails.empty
    assert quarantine["reason"].iloc[0].startswith(reason)
    assert quarantine["raw"].iloc[0] == raw  # nothing lost: the bytes are kept


def test_binary_attachment_only_is_quarantined_with_reason():
    raw = (
        b"From: a@example.com\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n"
        b"--XX\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n"
        b"Content-Disposition: attachment; filename=x.bin\n\nAAECAwQFBgc=\n--XX--\n"
    )
    emails, quarantine, _ = parse_emails(one_row(raw), {})
    assert emails.empty
    assert "attachment" in quarantine["reason"].iloc[0]


def test_binary_attachment_with_subject_keeps_the_subject():
    raw = (
        b"From: a@example.com\nSubject: invoice attached\nContent-Type: application/pdf\n"
        b"Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n"
    )
    emails, quarantine, _ = parse_emails(one_row(raw), {})
    assert quarantine.empty
    assert emails["subject"].iloc[0] == "invoice attached"
    assert emails["attachment_count"].iloc[0] == 1


def test_full_corpus_rows_are_conserved_and_duplicates_quarantined(raw_corpus):
    emails, quarantine, metrics = parse_emails(raw_corpus, {})
    assert list(emails.columns) == EMAIL_COLUMNS
    assert list(quarantine.columns) == QUARANTINE_COLUMNS
    assert len(raw_corpus) == 6046
    assert len(emails) + len(quarantine) == len(raw_corpus)
    assert metrics["messages_read"]["value"] == 6046
    assert emails["email_id"].is_unique
    assert set(emails["label"]) == {0, 1}
    duplicates = quarantine[quarantine["reason"].str.startswith("duplicate")]
    assert len(duplicates) > 0
    kept = set(emails["email_id"])
    assert all(reason.split(":", 1)[1] in kept for reason in duplicates["reason"])
    # the one corpus file whose content does not match the MD5 in its name is flagged, not dropped
    assert (~emails["checksum_ok"]).sum() == 1
    # the real corpus has no binary body and no unlabelled folder: only duplicates are quarantined
    assert set(quarantine["reason"].str.split("_of:").str[0]) <= {"duplicate", "duplicate_label_conflict"}
    assert not emails["body"].str.contains("[\x00-\x08\x0e-\x1f\x7f-\x9f]").any()
    assert not emails["header_text"].str.contains("[\r\x00-\x08\x0b-\x1f]").any()
    # raw 8-bit subjects (no RFC 2047 word) are decoded, not turned into U+FFFD, so no real text looks binary
    assert not emails["subject"].str.contains("\ufffd").any()
    from frugalml.nodes.split import validate_text_dataset

    assert validate_text_dataset(emails, {})[1].empty


def test_raw_dedup_keeps_more_rows_than_text_dedup(raw_corpus):
    sample = raw_corpus.iloc[::10]
    by_raw, _, _ = parse_emails(sample, {"dedup_on": "raw"})
    by_text, _, _ = parse_emails(sample, {"dedup_on": "text"})
    none, _, _ = parse_emails(sample, {"dedup_on": "none"})
    assert len(none) >= len(by_raw) >= len(by_text)


def test_sample_is_fixed_and_group_proportional(raw_corpus):
    first, _, _ = parse_emails(raw_corpus, {"sample": {"n": 300, "seed": 0}, "dedup_on": "none"})
    second, _, _ = parse_emails(raw_corpus, {"sample": {"n": 300, "seed": 0}, "dedup_on": "none"})
    assert first["email_id"].tolist() == second["email_id"].tolist()
    assert abs(len(first) - 300) <= 5
    assert set(first["group"]) == set(raw_corpus["group"])


def test_empty_body_with_a_subject_keeps_the_subject():
    emails, quarantine, _ = parse_emails(one_row(b"From: a@example.com\nSubject: lunch at noon?\n\n"), {})
    assert quarantine.empty
    assert emails["subject"].iloc[0] == "lunch at noon?" and emails["body"].iloc[0] == ""


def test_checksum_verification_can_be_turned_off(raw_corpus):
    mismatched = raw_corpus[raw_corpus["member"].str.contains("00230.244a63cd74c81123ef26129453e32c95")]
    checked, _, _ = parse_emails(mismatched, {})
    unchecked, _, _ = parse_emails(mismatched, {"verify_message_checksums": False})
    assert not checked["checksum_ok"].iloc[0] and unchecked["checksum_ok"].iloc[0]


# --- issue 14: messy archives and hostile messages ------------------------------------------------------
def test_folders_that_match_no_label_rule_are_quarantined_not_ham(raw_corpus):
    """Before issue 14 every folder not named spam* silently became ham (label 0)."""
    sample = raw_corpus.groupby("group").head(3).copy()
    sample.loc[sample["group"] == "hard-ham-1", "group"] = "inbox"  # a folder the label rule does not know
    sample.loc[sample["group"] == "spam-2", "group"] = "spam-ham-mix"  # matches spam* and *ham*
    emails, quarantine, metrics = parse_emails(sample, {})
    assert len(emails) + len(quarantine) == len(sample)
    assert "inbox" not in set(emails["group"]) and "spam-ham-mix" not in set(emails["group"])
    reasons = quarantine.set_index("group")["reason"]
    assert reasons["inbox"].str.startswith("unlabelled_group: folder 'inbox' matches no ingest.label_rule").all()
    assert reasons["spam-ham-mix"].str.startswith("ambiguous_group:").all()
    assert (quarantine.set_index("group").loc["inbox", "raw"] == sample.set_index("group").loc["inbox", "raw"]).all()
    assert metrics["quarantine_unlabelled_group"]["value"] == 3


def test_label_rule_is_a_parameter(raw_corpus):
    sample = raw_corpus.groupby("group").head(2).copy()
    sample["group"] = sample["group"].map(lambda g: "junk" if g.startswith("spam") else "inbox")
    rule = {"spam*": None, "*ham*": None, "junk": 1, "inbox": 0}  # null removes a default pattern
    emails, quarantine, _ = parse_emails(sample, {"label_rule": rule})
    assert quarantine.empty
    assert (emails["label"] == emails["group"].map({"junk": 1, "inbox": 0})).all()


def test_a_label_rule_that_labels_no_folder_stops_before_parsing(raw_corpus):
    sample = raw_corpus.head(5).assign(group="inbox")
    with pytest.raises(ParameterError, match=r"labels none of the corpus folders \['inbox'\]"):
        parse_emails(sample, {})


def test_unexpected_archive_members_are_quarantined_with_their_bytes(raw_corpus):
    rows = one_row(b"not a message, but kept", member="package/data/spam-1/README")
    rows["reject_reason"] = "unexpected_member: name 'README' does not match the stdlib layout"
    rows = pd.concat([rows, one_row(raw_corpus["raw"].iloc[0]).assign(reject_reason=None)], ignore_index=True)
    emails, quarantine, metrics = parse_emails(rows, {})
    assert len(emails) == 1 and len(quarantine) == 1
    assert quarantine["reason"].iloc[0].startswith("unexpected_member:")
    assert quarantine["raw"].iloc[0] == b"not a message, but kept"
    assert metrics["quarantine_unexpected_member"]["value"] == 1


def _with_subject(raw: bytes, subject: bytes) -> bytes:
    head, body = raw.split(b"\n\n", 1)
    lines = [line for line in head.split(b"\n") if not line.lower().startswith(b"subject:")]
    return b"\n".join([*lines, b"Subject: " + subject]) + b"\n\n" + body


INJECTED = "Your invoice\r\nX-Priority: 1\r\nBcc: victim@example.com\nList-Unsubscribe: <mailto:x@y>"


@pytest.mark.parametrize("encoding", ["b", "q"])
def test_encoded_subject_cannot_inject_header_lines(raw_corpus, encoding):
    """An RFC 2047 subject that decodes to CR/LF + headers landed as header lines and steered the header LFs."""
    from frugalml.nodes.lf_library import lf_view

    if encoding == "b":
        word = b"=?utf-8?b?" + base64.b64encode(INJECTED.encode()) + b"?="
    else:
        word = b"=?utf-8?q?" + INJECTED.replace(" ", "_").replace("\r", "=0D").replace("\n", "=0A").encode() + b"?="
    original = raw_of(raw_corpus, BASE64)  # a real spam without priority or list headers
    raw = _with_subject(original, word)
    fields = parse_message(raw)
    assert fields["subject"] == "Your invoice X-Priority: 1 Bcc: victim@example.com List-Unsubscribe: <mailto:x@y>"
    lines = fields["header_text"].split("\n")
    assert len(lines) == fields["header_count"]  # one line per header, whatever the values decode to
    injected = ("X-Priority: 1", "Bcc: victim@example.com", "List-Unsubscribe: <mailto:x@y>")
    assert not any(line.strip().startswith(injected) for line in lines)
    emails, _, _ = parse_emails(pd.concat([one_row(original), one_row(raw)], ignore_index=True), {"dedup_on": "none"})
    view = lf_view(emails, ["subject", "body"])
    assert not view["lf_priority"].any() and not view["lf_list_headers"].any()  # the header LFs are not steered


@pytest.mark.parametrize("header", ["From", "Reply-To", "To", "Message-ID", "In-Reply-To", "List-Id"])
def test_no_decoded_header_field_carries_control_characters(raw_corpus, header):
    hostile = "a@example.com\r\nBcc: b@example.com\x00\x1b\u2028"
    value = "=?utf-8?b?" + base64.b64encode(hostile.encode()).decode() + "?="
    raw = raw_of(raw_corpus, MULTIPART)
    head, body = raw.split(b"\n\n", 1)
    lines = [line for line in head.split(b"\n") if not line.lower().startswith(header.lower().encode() + b":")]
    raw = b"\n".join([*lines, f"{header}: {value}".encode()]) + b"\n\n" + body
    emails, quarantine, _ = parse_emails(one_row(raw), {})
    assert quarantine.empty
    derived = ["from_addr", "to_addr", "reply_to", "subject", "message_id", "in_reply_to", "list_id", "header_text"]
    for column in derived:
        value = emails[column].iloc[0]
        assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029]", value.replace("\n", "") if column == "header_text"
                             else value), (column, value)  # fmt: skip
    assert len(emails["header_text"].iloc[0].split("\n")) == emails["header_count"].iloc[0]


def _with_body(raw: bytes, body: bytes, content_type: bytes = b"text/plain; charset=utf-8") -> bytes:
    head = raw.split(b"\n\n", 1)[0]
    lines = [line for line in head.split(b"\n") if not line.lower().startswith((b"content-", b"mime-version"))
             and not line.startswith((b" ", b"\t"))]  # fmt: skip
    return b"\n".join([*lines, b"MIME-Version: 1.0", b"Content-Type: " + content_type]) + b"\n\n" + body


@pytest.mark.parametrize(
    "garbage",
    [np.random.default_rng(0).bytes(3000), bytes(range(256)) * 8, b"\x00" * 500 + b"PK\x03\x04" + b"\x00\x01" * 400],
    ids=["random_bytes", "all_byte_values", "nul_padded_zip"],
)
def test_binary_body_is_quarantined_with_a_reason(raw_corpus, garbage):
    raw = _with_body(raw_of(raw_corpus, MULTIPART), garbage)
    emails, quarantine, metrics = parse_emails(one_row(raw), {})
    assert emails.empty, emails["body"].iloc[0][:80] if len(emails) else ""
    assert quarantine["reason"].iloc[0].startswith("binary_body:")
    assert "ingest.max_control_share 10%" in quarantine["reason"].iloc[0]
    assert quarantine["raw"].iloc[0] == raw
    kept, _, _ = parse_emails(one_row(raw), {"max_control_share": 1.0})  # the rule is a parameter
    assert len(kept) == 1


def test_isolated_control_characters_are_stripped(raw_corpus):
    original = parse_message(raw_of(raw_corpus, MULTIPART))["body"]
    dirty = original.replace(" ", "\x00 ", 5).replace("e", "e\x1b", 3) + "\x7f"
    raw = _with_body(raw_of(raw_corpus, MULTIPART), dirty.encode("utf-8"))
    emails, quarantine, metrics = parse_emails(one_row(raw), {})
    assert quarantine.empty
    body = emails["body"].iloc[0]
    assert not re.search("[\x00\x1b\x7f]", body)
    assert body == original
    assert emails["control_chars_stripped"].iloc[0] == 9 and metrics["control_chars_stripped"]["value"] == 9


def test_windows_1252_punctuation_in_latin1_text_is_not_stripped(raw_corpus):
    """Mail labelled ISO-8859-1 often holds Windows-1252 quotes (0x92); they are punctuation, not controls."""
    raw = _with_body(raw_of(raw_corpus, MULTIPART), b"We don\x92t sell \x93cheap\x94 things \x96 ever.",
                     b"text/plain; charset=iso-8859-1")  # fmt: skip
    emails, _, _ = parse_emails(one_row(raw), {})
    assert emails["body"].iloc[0] == "We don\u2019t sell \u201ccheap\u201d things \u2013 ever."
    assert emails["control_chars_stripped"].iloc[0] == 0
