"""Column names shared by the stages that produce or change labels (weak labelling, cleaning, training).

A training frame may carry, next to ``params:data.label_column`` (the hard label):

- ``label_source``: where the label came from: ``gold`` (hand label), ``weak`` (label model),
  ``relabelled`` (changed by the cleaning policy);
- ``label_confidence``: the probability of the hard label (1.0 for hand labels);
- ``label_prob_<value>``: one column per declared label value, the label distribution (soft labels).

Stages that do not know these columns pass them through untouched; training reads them only when asked
(``train.targets: soft``).
"""

from __future__ import annotations

SOURCE_COLUMN = "label_source"
CONFIDENCE_COLUMN = "label_confidence"
PROB_PREFIX = "label_prob_"

GOLD = "gold"
WEAK = "weak"
RELABELLED = "relabelled"


def prob_column(value: int) -> str:
    """Name of the soft-label column of one label value.

    Args:
        value: A value of ``params:data.labels``.

    Returns:
        ``label_prob_<value>``.
    """
    return f"{PROB_PREFIX}{value}"


def prob_columns(labels: list[int]) -> list[str]:
    """Soft-label column names, in the order of ``labels``.

    Args:
        labels: ``params:data.labels``.

    Returns:
        One column name per label.
    """
    return [prob_column(value) for value in labels]
