"""Data-quality gates: Great Expectations (GX 1.x) suites from configuration, row-level quarantine, Data Docs.

Notation: N rows in a batch; a suite is a list of expectations, each with a *severity* (``error`` stops the
run, ``warn`` is reported) and optionally ``quarantine: true`` (row-level: failing rows leave the batch with
their reason; the batch goes on while the quarantined share stays at or under ``max_quarantine_share``).

A gate is two nodes so that the evidence survives a failure: :func:`validate_with_suite` always returns the
report, the quarantine, the metrics and the Data Docs (saved by the catalog), and :func:`enforce_quality_gate`
then stops the run with :class:`~frugalml.errors.DataQualityError` or passes the clean rows on.

Messages speak the user's terms: an expectation on a derived column (``_text``, ``_text_type``, ``_label``,
``_label_share``, ``_label_balance``, ``_positive``) is named by the columns it derives from (``text of message``,
``class shares of category x 4 classes``); a failure says what was observed and what is allowed, a class-balance
failure names the classes (``class 2 ('spam_2002') is 0.362% of the 552 labelled rows (allowed ≥ 1%...)``), and
a failure that has a known cause says which parameter or fix addresses it.

Binary and multi-class tasks (K = len(data.labels) >= 2) are checked the same way: every declared class present
(``expect_column_distinct_values_to_contain_set`` on ``_label``) with at least a share of an even split
(``expect_column_min_to_be_between`` on ``_label_balance``).
"""

from frugalml.nodes.quality.gate import enforce_quality_gate, validate_with_suite
from frugalml.nodes.quality.profile import propose_suite
from frugalml.nodes.quality.suites import (
    DERIVED,
    LABEL,
    LABEL_BALANCE,
    LABEL_SHARE,
    POSITIVE,
    ROW,
    TEXT,
    TEXT_TYPE,
    ExpectationSpec,
    SuiteSpec,
    describe_column,
    parse_suite,
)

__all__ = [
    "DERIVED",
    "LABEL",
    "LABEL_BALANCE",
    "LABEL_SHARE",
    "POSITIVE",
    "ROW",
    "TEXT",
    "TEXT_TYPE",
    "ExpectationSpec",
    "SuiteSpec",
    "describe_column",
    "enforce_quality_gate",
    "parse_suite",
    "propose_suite",
    "validate_with_suite",
]
