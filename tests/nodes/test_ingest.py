"""Parser tests on real messages of the corpus, plus the bad inputs the foundation issue lists."""

from __future__ import annotations

import re

import pandas as pd
import pytest

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
