"""Named errors. Each says what went wrong and where, so a failed run explains itself.

Errors raised while a Kedro dataset loads also subclass ``DatasetError``, so Kedro re-raises them as they
are instead of wrapping them in a generic message.
"""

from kedro.io import DatasetError


class FrugalMLError(Exception):
    """Base class of every error frugalml raises on purpose."""


class ParameterError(FrugalMLError, ValueError):
    """A parameters file has an unknown key, a wrong type or an invalid value."""


class ArchiveError(FrugalMLError, DatasetError):
    """A raw archive could not be used."""


class ArchiveDigestError(ArchiveError):
    """An archive's SHA-256 does not match the pinned digest (wrong file, or truncated download)."""


class CorruptArchiveError(ArchiveError):
    """An archive has the right digest but cannot be read (or no digest was pinned and it is broken)."""


class SourceUnavailableError(ArchiveError):
    """None of the configured corpus sources produced an archive."""


class SchemaError(FrugalMLError, ValueError):
    """A dataset lacks a required column or holds values outside the declared set."""


class EmptyDatasetError(FrugalMLError, ValueError):
    """A stage received no usable rows."""


class DataQualityError(FrugalMLError):
    """A data-quality gate failed (raised by the quality stage)."""


class ModelError(FrugalMLError, ValueError):
    """A model is not usable as configured (e.g. a layer that breaks per-sample gradients)."""


class PretrainedModelError(ModelError):
    """A pretrained encoder directory is unusable: missing, incomplete, or its weights' digest does not match."""


class ModelArtifactError(ModelError):
    """A saved model folder does not match the digests its ``model.json`` records (changed or corrupted)."""


class CompressionError(ModelError):
    """A compression request is unusable (unknown precision, FP8 without a GPU, a bad calibration set, a pruning
    ratio out of range, a layer too small to cluster), or a compressed artifact does not match its digests."""


class DistillationError(ModelError):
    """A distillation cannot run as asked (no rows to learn from, a teacher of other labels), or its student loses
    more dev accuracy against the teacher than allowed."""


class LabelingFunctionError(FrugalMLError, ValueError):
    """A labelling function returned a value that is neither an abstain nor a class index, or is broken."""


class ProbabilityError(SchemaError):
    """Predicted probabilities are unusable: NaN, outside [0, 1], rows not summing to 1, a wrong number of
    classes, or ids that do not match the labelled rows they should describe."""


class GovernanceError(FrugalMLError):
    """A governance rule refused an operation (the refusal itself is audited)."""


class AccessDenied(GovernanceError, PermissionError):
    """The acting user's roles do not allow the pipeline or operation."""


class ApprovalError(GovernanceError):
    """A two-person approval is missing, self-given, unknown or already used."""


class RetentionError(GovernanceError):
    """A purge would cut audit records younger than the retention period."""


class AuditIntegrityError(GovernanceError):
    """The audit trail fails verification (edited, deleted, inserted, reordered or truncated records)."""
