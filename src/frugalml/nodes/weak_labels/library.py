"""The e-mail labelling-function library: header, content, keyword and subject heuristics.

Each rule is a condition on one row that also works on a whole frame (comparisons and ``&``/``|`` of
columns), so the same rule runs in Snorkel's row applier and in the vectorised one. The conditions read
derived ``lf_*`` columns that :func:`lf_view` computes once per frame with pandas string kernels.

Rules vote a label *name* (``spam`` / ``ham``): they fit any dataset whose ``data.label_names`` has those
names and whose columns they read (header rules need the e-mail columns of the ingest stage; content and
keyword rules only need ``data.text_columns``). How the rules were written: from mail-filtering knowledge
(SpamAssassin's rule families); thresholds were checked on the gold dev set only (docs/weak_labels.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from frugalml.nodes.weak_labels.spec import LFSpec, register_spec

SPAM, HAM = "spam", "ham"

# --- regex families -----------------------------------------------------------------------------------
MONEY = r"\$\s?\d[\d,]*(?:\.\d\d)?|\b\d[\d,]*\s?(?:dollars|usd)\b|\$\$+"
URGENCY = (
    r"\b(?:act now|urgent|limited time|expires?|don'?t (?:delay|miss)|order (?:now|today)|today only|"
    r"immediately|hurry|last chance|while supplies last|once in a lifetime|call now|apply now)\b"
)
REMOVE_ME = (
    r"\b(?:to be removed|remove me|removal (?:instructions|request)|opt[- ]?out|no longer wish to receive|"
    r"click (?:here|below) to (?:be )?remove|unsubscribe by|reply with [\"']?remove)"
)
OBFUSCATED = (
    r"\b(?:v[i1!|]+[a@]?gr[a@]|c[i1!]al[i1!]s|fr[3]{2}|m[o0]rtg[a@]ge|c[a@]\$h|\$ex|pr[o0]fit\$)\b|"
    r"\b(?:[a-z] ){4,}[a-z]\b|\b[a-z]+(?:\.{2,}[a-z]+){2,}"
)
RANDOM_TOKEN = r"\b(?=[A-Za-z0-9]*[0-9][A-Za-z0-9]*[0-9])(?=[A-Za-z0-9]*[a-z])(?=[A-Za-z0-9]*[A-Z])[A-Za-z0-9]{7,}\b"
FOREIGN_SCRIPT = r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]"
SPAM_WORDS = (
    r"\b(?:viagra|cialis|mortgage|refinanc\w*|debt|credit card|casino|lottery|winner|make money|"
    r"work from home|weight loss|dear friend|guaranteed|risk[- ]free|no obligation|earn (?:up to )?\$|"
    r"free (?:offer|gift|trial|quote|money|access)|100% free|million dollars|wire transfer|investment|"
    r"pre-?approved|low(?:est)? (?:rate|price)s?|cash bonus|bulk e-?mail|e-?mail addresses|marketing)\b"
)
OFFER_WORDS = (
    r"\b(?:offer|order now|buy now|special promotion|discount|save (?:up to )?\d+%|call toll[- ]free|"
    r"toll free|satisfaction guaranteed|money back|your (?:income|business)|subscribers?|visit our (?:web)?site)\b"
)
TECH_WORDS = (
    r"\b(?:linux|kernel|perl|python|rpm|debian|red ?hat|cvs|patch(?:es)?|compil\w+|gcc|bug|sourceforge|"
    r"spamassassin|razor|exmh|mutt|procmail|apt-get|xml|sql|script|config\w*|install\w*|package|version|"
    r"source|server|mailing list|unix|emacs|gnome|kde|sendmail|postfix|freebsd|ssh|shell|debug\w*|diff|"
    r"repository|release|commit)\b"
)
LIST_HEADERS = r"(?im)^(?:list-unsubscribe|list-post|list-help|x-beenthere|x-mailman-version|mailing-list):"
PRIORITY_HEADERS = r"(?im)^(?:x-priority:\s*1|x-msmail-priority:\s*high|importance:\s*high)"
FOREIGN_CHARSET = r"(?i)charset=\"?(?:ks_c_5601|euc-kr|gb2312|gbk|big5|iso-2022-jp|shift_jis|windows-1251|koi8)"
MESSAGE_ID = r"^<[^<>@\s]+@[^<>@\s]+>$"
REPLY_SUBJECT = r"(?i)^\s*(?:re|fwd?|aw)\s*(?:\[\d+\])?\s*:"
LIST_TAG_SUBJECT = r"^\s*(?:(?i:re|fwd?)\s*:\s*)*\[[^\]]{2,40}\]"
SPAM_SUBJECT = r"(?i)(?:!!|\$\$|\bfree\b|\bwin\b|\bsave\b|\boffer\b|\bcash\b|\burgent\b|\b\d+%|adv\s*:|\bmoney\b)"


def _text(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    parts = [frame[c].fillna("").astype(str) for c in columns if c in frame.columns]
    if not parts:
        return pd.Series([""] * len(frame), index=frame.index, dtype=object)
    text = parts[0]
    for part in parts[1:]:
        text = text + "\n" + part
    return text


def _domain(addresses: pd.Series) -> pd.Series:
    first = addresses.fillna("").astype(str).str.split(",").str[0].str.strip().str.lower()
    return first.str.extract(r"@([^@\s>]+)$", expand=False).fillna("").str.split(".").str[-2:].str.join(".")


def _sender(addresses: pd.Series) -> pd.Series:
    return addresses.fillna("").astype(str).str.split(",").str[0].str.strip().str.lower()


def lf_view(frame: pd.DataFrame, text_columns: list[str], context: pd.DataFrame | None = None) -> pd.DataFrame:
    """The frame plus the derived ``lf_*`` columns the library's rules read (vectorised).

    Text-derived columns come from ``text_columns`` and always exist; header-derived ones only where the
    e-mail columns they need exist. Batch statistics (how often a sender occurs) are counted over
    ``context`` (default: the frame itself), so that the dev set and the pool are labelled alike.

    Args:
        frame: Rows to label.
        text_columns: ``params:data.text_columns``.
        context: The unlabelled batch the statistics are counted on (labels are never read).

    Returns:
        A new frame (original columns untouched).
    """
    text = _text(frame, text_columns)
    lower = text.str.lower()
    derived: dict[str, Any] = {}
    derived["lf_words"] = text.str.count(r"\S+")
    derived["lf_letters"] = text.str.count(r"[A-Za-z]")
    derived["lf_caps_ratio"] = text.str.count(r"[A-Z]") / derived["lf_letters"].clip(lower=1)
    derived["lf_urls"] = lower.str.count(r"https?://|www\.")
    derived["lf_url_density"] = 100 * derived["lf_urls"] / derived["lf_words"].clip(lower=1)
    derived["lf_money"] = lower.str.count(MONEY)
    derived["lf_urgency"] = lower.str.count(URGENCY)
    derived["lf_remove_me"] = lower.str.contains(REMOVE_ME, regex=True)
    derived["lf_obfuscated"] = lower.str.count(OBFUSCATED)
    derived["lf_exclaims"] = text.str.count("!")
    derived["lf_quoted_lines"] = text.str.count(r"(?m)^\s*>")
    derived["lf_wrote"] = lower.str.contains(r"\b(?:wrote|writes|said):\s*$|\bwrote:", regex=True)
    derived["lf_pgp"] = text.str.contains("BEGIN PGP SIGN", regex=False)
    derived["lf_tech"] = lower.str.count(TECH_WORDS)
    derived["lf_spam_words"] = lower.str.count(SPAM_WORDS)
    derived["lf_offer_words"] = lower.str.count(OFFER_WORDS)
    derived["lf_foreign_script"] = text.str.count(FOREIGN_SCRIPT) / text.str.len().clip(lower=1)
    derived["lf_sig_dashes"] = text.str.contains(r"(?m)^-- ?$", regex=True)
    if "subject" in frame.columns:
        subject = frame["subject"].fillna("").astype(str)
        letters = subject.str.count(r"[A-Za-z]")
        derived["lf_subject_reply"] = subject.str.contains(REPLY_SUBJECT, regex=True)
        derived["lf_subject_list_tag"] = subject.str.contains(LIST_TAG_SUBJECT, regex=True)
        derived["lf_subject_caps"] = (letters >= 8) & (subject.str.count(r"[A-Z]") / letters.clip(lower=1) > 0.7)
        derived["lf_subject_spammy"] = subject.str.contains(SPAM_SUBJECT, regex=True)
        derived["lf_subject_random_token"] = subject.str.contains(RANDOM_TOKEN, regex=True)
    if "header_text" in frame.columns:
        headers = frame["header_text"].fillna("").astype(str)
        derived["lf_list_headers"] = headers.str.contains(LIST_HEADERS, regex=True)
        derived["lf_priority"] = headers.str.contains(PRIORITY_HEADERS, regex=True)
        derived["lf_foreign_charset"] = headers.str.contains(FOREIGN_CHARSET, regex=True)
    if "message_id" in frame.columns:
        message_id = frame["message_id"].fillna("").astype(str).str.strip()
        derived["lf_msgid_missing"] = message_id == ""
        derived["lf_msgid_odd"] = (message_id != "") & ~message_id.str.match(MESSAGE_ID)
    if {"from_addr", "reply_to"} <= set(frame.columns):
        reply = _domain(frame["reply_to"])
        derived["lf_reply_mismatch"] = (reply != "") & (reply != _domain(frame["from_addr"]))
    if "from_addr" in frame.columns:
        counts = _sender((context if context is not None else frame)["from_addr"]).value_counts()
        sender = _sender(frame["from_addr"])
        derived["lf_sender_count"] = sender.map(counts).fillna(0).where(sender != "", 0).astype(int)
        local = frame["from_addr"].fillna("").astype(str).str.split("@").str[0]
        derived["lf_from_digits"] = local.str.count(r"\d") >= 3
    if "to_addr" in frame.columns:
        derived["lf_to_missing"] = frame["to_addr"].fillna("").astype(str).str.strip() == ""
    return frame.assign(**derived)


def _nonempty(column: str) -> Callable[[Any], Any]:
    def condition(x: Any) -> Any:
        value = x[column]
        if isinstance(value, pd.Series):
            return value.fillna("").astype(str).str.strip() != ""
        return isinstance(value, str) and value.strip() != ""

    return condition


def rule(  # noqa: PLR0917  (a table of rules reads best positionally)
    name: str, vote: str, family: str, columns: tuple[str, ...], condition: Callable[[Any], Any], rationale: str
) -> LFSpec:
    """Register a library rule: vote ``vote`` where ``condition`` holds, abstain elsewhere.

    Args:
        name: LF name.
        vote: Label name voted.
        family: LF family.
        columns: Raw columns the condition needs (derived ``lf_*`` ones come from :func:`lf_view`).
        condition: Row -> bool that also maps a frame to a boolean Series.
        rationale: Why it works.

    Returns:
        The registered spec.
    """

    def frame_condition(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(condition(frame), dtype=bool)

    spec = LFSpec(
        name=name,
        function=lambda x: bool(condition(x)),
        family=family,
        columns=columns,
        rationale=rationale,
        vectorized=frame_condition,
        vote=vote,
    )
    register_spec(spec, replace=True)
    return spec


T = ()  # text rules read only derived columns of data.text_columns

# --- header heuristics --------------------------------------------------------------------------------
rule(
    "header_in_reply_to",
    HAM,
    "header",
    ("in_reply_to",),
    _nonempty("in_reply_to"),
    "An In-Reply-To header means a reply in an existing conversation, which spammers rarely fake.",
)
rule(
    "header_list_id",
    HAM,
    "header",
    ("list_id",),
    _nonempty("list_id"),
    "A List-Id header marks mail from a mailing-list manager the recipient subscribed to.",
)
rule(
    "header_list_headers",
    HAM,
    "header",
    ("header_text",),
    lambda x: x["lf_list_headers"],
    "List-Unsubscribe/List-Post/X-BeenThere/X-Mailman headers are added by list servers (RFC 2369).",
)
rule(
    "header_message_id_missing",
    SPAM,
    "header",
    ("message_id",),
    lambda x: x["lf_msgid_missing"],
    "Every real mail user agent adds a Message-ID; bulk senders often omit it.",
)
rule(
    "header_message_id_odd",
    SPAM,
    "header",
    ("message_id",),
    lambda x: x["lf_msgid_odd"],
    "A Message-ID not of the form <local@domain> comes from hand-rolled bulk-mail software.",
)
rule(
    "header_reply_to_mismatch",
    SPAM,
    "header",
    ("from_addr", "reply_to", "header_text"),
    lambda x: x["lf_reply_mismatch"] & np.logical_not(x["lf_list_headers"]),
    "Reply-To in another domain than From (outside mailing lists) diverts answers: a spam pattern.",
)
rule(
    "header_many_hops",
    HAM,
    "header",
    ("received_count",),
    lambda x: x["received_count"] >= 8,
    "Many Received hops follow list expansion and relaying between real mail servers.",
)
rule(
    "header_frequent_sender",
    HAM,
    "header",
    ("from_addr",),
    lambda x: x["lf_sender_count"] >= 5,
    "A sender address seen many times in the batch is a correspondent, list or newsletter the recipient "
    "keeps; spammers rotate their sender addresses.",
)
rule(
    "header_priority_high",
    SPAM,
    "header",
    ("header_text",),
    lambda x: x["lf_priority"],
    "X-Priority: 1 / X-MSMail-Priority: High are set by bulk mailers to catch attention.",
)
rule(
    "header_foreign_charset",
    SPAM,
    "header",
    ("header_text",),
    lambda x: x["lf_foreign_charset"],
    "Unsolicited Korean/Chinese/Japanese/Cyrillic charsets dominate spam sent to English-speaking lists.",
)
rule(
    "header_from_digits",
    SPAM,
    "header",
    ("from_addr",),
    lambda x: x["lf_from_digits"],
    "Sender local parts with many digits are machine-generated throwaway accounts.",
)

# --- content heuristics -------------------------------------------------------------------------------
rule(
    "content_html_only",
    SPAM,
    "content",
    ("html_only",),
    lambda x: x["html_only"] == True,  # noqa: E712
    "HTML-only mail without a text part is typical of marketing templates.",
)
rule(
    "content_url_density",
    SPAM,
    "content",
    ("url_count", "header_text"),
    lambda x: (
        (x["url_count"] >= 5)
        & (100 * x["url_count"] / np.maximum(x["lf_words"], 1) >= 8)
        & (x["lf_quoted_lines"] == 0)
        & np.logical_not(x["lf_list_headers"])
    ),
    "Many links (hrefs included) per word of text, outside list mail, means the mail exists to drive clicks.",
)
rule(
    "content_money",
    SPAM,
    "content",
    T,
    lambda x: (x["lf_money"] >= 3) & (x["lf_quoted_lines"] == 0),
    "Repeated money amounts ($, dollars) are the core of offers and scams.",
)
rule(
    "content_urgency",
    SPAM,
    "content",
    T,
    lambda x: x["lf_urgency"] >= 2,
    "Urgency phrases (act now, limited time, expires) pressure the reader: a classic spam device.",
)
rule(
    "content_caps",
    SPAM,
    "content",
    T,
    lambda x: (x["lf_letters"] >= 80) & (x["lf_caps_ratio"] >= 0.3),
    "A high share of capital letters is shouting, rare in conversation.",
)
rule(
    "content_remove_me",
    SPAM,
    "content",
    T,
    lambda x: x["lf_remove_me"],
    "'To be removed / opt-out / reply with REMOVE' footers are the fig leaf of bulk mail.",
)
rule(
    "content_obfuscated",
    SPAM,
    "content",
    T,
    lambda x: x["lf_obfuscated"] >= 2,
    "Obfuscated words (v1agra, s p a c e d letters, digits in words) exist to evade filters.",
)
rule(
    "content_foreign_script",
    SPAM,
    "content",
    T,
    lambda x: x["lf_foreign_script"] >= 0.05,
    "Text mostly in CJK or Hangul script, unsolicited, is bulk mail from abroad in this kind of inbox.",
)
rule("content_exclaims", SPAM, "content", T, lambda x: x["lf_exclaims"] >= 6, "Many exclamation marks signal hype.")
rule(
    "content_quoted_reply",
    HAM,
    "content",
    T,
    lambda x: x["lf_quoted_lines"] >= 3,
    "Quoted lines ('> ...') mean a reply to an earlier message in a discussion.",
)
rule("content_wrote", HAM, "content", T, lambda x: x["lf_wrote"], "'X wrote:' attributions precede quotes in replies.")
rule(
    "content_pgp_signed",
    HAM,
    "content",
    T,
    lambda x: x["lf_pgp"],
    "PGP-signed mail comes from people who care about their identity, not from spammers.",
)
rule(
    "content_signature",
    HAM,
    "content",
    T,
    lambda x: x["lf_sig_dashes"] & (x["lf_money"] == 0),
    "A '-- ' signature delimiter (RFC 3676) is written by mail clients of real people.",
)

# --- keyword families ---------------------------------------------------------------------------------
rule(
    "keyword_spam_terms",
    SPAM,
    "keyword",
    T,
    lambda x: x["lf_spam_words"] >= 2,
    "Vocabulary of pharmacy, mortgage, debt, lottery and make-money offers.",
)
rule(
    "keyword_offer_terms",
    SPAM,
    "keyword",
    T,
    lambda x: x["lf_offer_words"] >= 3,
    "Sales vocabulary (order now, discount, money back) in volume is advertising.",
)
rule(
    "keyword_tech_terms",
    HAM,
    "keyword",
    T,
    lambda x: (x["lf_tech"] >= 4) & (x["lf_money"] == 0),
    "Technical discussion (linux, perl, cvs, patches) without money amounts is list traffic.",
)

# --- subject heuristics -------------------------------------------------------------------------------
rule(
    "subject_reply",
    HAM,
    "subject",
    ("subject",),
    lambda x: x["lf_subject_reply"],
    "Re:/Fwd: subjects belong to conversations.",
)
rule(
    "subject_list_tag",
    HAM,
    "subject",
    ("subject",),
    lambda x: x["lf_subject_list_tag"],
    "A [list-name] tag in the subject is added by mailing-list managers.",
)
rule(
    "subject_random_token",
    SPAM,
    "subject",
    ("subject",),
    lambda x: x["lf_subject_random_token"],
    "Random mixed-case tokens with digits (e.g. 2467SzaW) are appended by spam tools to defeat checksums.",
)
rule(
    "subject_caps",
    SPAM,
    "subject",
    ("subject",),
    lambda x: x["lf_subject_caps"],
    "An all-capitals subject is shouting for attention.",
)
rule(
    "subject_spammy",
    SPAM,
    "subject",
    ("subject",),
    lambda x: x["lf_subject_spammy"] & np.logical_not(x["lf_subject_reply"]),
    "Subjects with FREE, $$, !!, percentages or ADV: are advertising.",
)
