"""Wiring: the ingest pipeline turns the raw archive's messages into e-mails, and accounts for every message."""

from frugalml.runner import run_in_memory
from tests.helpers import stage


def test_every_raw_message_is_an_email_or_quarantined(raw_corpus):
    raw = raw_corpus.iloc[:150]
    out = run_in_memory(stage("ingest"), {"spam_corpus_archive": raw})
    emails, quarantine, metrics = out["emails"], out["emails_quarantine"], out["ingest_metrics"]
    assert len(emails) > 100 and {"email_id", "subject", "body", "label", "group"} <= set(emails.columns)
    assert set(quarantine["reason"]) and quarantine["reason"].notna().all() if len(quarantine) else True
    assert metrics["messages_read"]["value"] == len(raw) == len(emails) + len(quarantine)
    assert emails["email_id"].is_unique
