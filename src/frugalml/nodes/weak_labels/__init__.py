"""Weak labelling: labelling functions (LFs) vote on unlabelled rows, a label model combines the votes.

Notation: N pool rows, m LFs, C classes. An LF maps one row to a class index in ``0..C-1`` (the position of
the label in ``params:data.labels``) or :data:`ABSTAIN` (-1). The label matrix ``L`` is (N, m).

Modules, one concern each, in Snorkel's shape: :mod:`.spec` (what an LF is, the registry, :func:`register_lf`),
:mod:`.library` (the e-mail LF library; it imports only the spec), :mod:`.registry` (choosing LFs from
``params:weak_label.lfs``), :mod:`.application` (the pandas, vectorised and Dask appliers), :mod:`.label_model`
(Snorkel's ``LabelModel`` or a majority vote), :mod:`.analysis` (the LF summary, leave-one-out, the plot) and
:mod:`.nodes` (the three Kedro nodes: apply -> label model -> summary). Every public name is importable from
this package.
"""

from frugalml.nodes.weak_labels.analysis import leave_one_out, lf_summary_table, plot_lf_summary
from frugalml.nodes.weak_labels.application import apply_lfs, check_columns
from frugalml.nodes.weak_labels.label_model import (
    accuracy_of,
    argmax_random_ties,
    combine_votes,
    fit_label_model,
    majority_vote,
    require_two_classes,
)
from frugalml.nodes.weak_labels.library import lf_view
from frugalml.nodes.weak_labels.nodes import (
    LFVotes,
    apply_labelling_functions,
    fit_weak_label_model,
    summarise_weak_labels,
    weak_label,
)
from frugalml.nodes.weak_labels.registry import create_lfs, registered_lfs
from frugalml.nodes.weak_labels.spec import (
    ABSTAIN,
    LABELLING_FUNCTIONS,
    LFSpec,
    register_lf,
    register_spec,
    unregister_lf,
)

__all__ = [
    "ABSTAIN",
    "LABELLING_FUNCTIONS",
    "LFSpec",
    "LFVotes",
    "accuracy_of",
    "apply_labelling_functions",
    "apply_lfs",
    "argmax_random_ties",
    "check_columns",
    "combine_votes",
    "create_lfs",
    "fit_label_model",
    "fit_weak_label_model",
    "leave_one_out",
    "lf_summary_table",
    "lf_view",
    "majority_vote",
    "plot_lf_summary",
    "register_lf",
    "register_spec",
    "registered_lfs",
    "require_two_classes",
    "summarise_weak_labels",
    "unregister_lf",
    "weak_label",
]
