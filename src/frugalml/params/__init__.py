"""Parameter schemas, validated strictly (``extra="forbid"``) before any work is done.

Every ``conf/<env>/parameters*.yml`` key is described here, one module per block (``params/train.py`` is
``params:train``), each registered with :func:`register_params`. :func:`validate_parameters` checks the whole
merged parameters dict when a Kedro run starts (see :mod:`frugalml.hooks`); nodes re-validate the block they
receive, so calling a node from Python gets the same checks. A new stage adds ``params/<stage>.py`` and one
import line below.
"""

from frugalml.params.clean import CleanParams, DataIssueParams
from frugalml.params.compress import CompressParams
from frugalml.params.core import (
    PARAMETER_BLOCKS,
    SharedParams,
    Strict,
    deep_merge,
    load_project_parameters,
    parse_params,
    register_params,
    root_model,
    validate_parameters,
)
from frugalml.params.data import DataSchema, TrackingParams
from frugalml.params.distill import DistillParams
from frugalml.params.evaluate import EvaluateParams
from frugalml.params.ingest import IngestParams, SampleParams
from frugalml.params.quality import DriftParams, DriftThresholds, QualityParams
from frugalml.params.split import SplitParams, TemporalSplit
from frugalml.params.train import (
    AUTO_BATCH_SIZE,
    PRV_MAX_EPSILON,
    FeatureParams,
    ModelParams,
    PretrainedParams,
    PrivacyParams,
    TrainParams,
)
from frugalml.params.weak_label import WeakLabelParams

#: the schema of a project's whole parameters with the built-in blocks (``root_model()`` adds later ones)
FrugalParams = root_model()

__all__ = [
    "AUTO_BATCH_SIZE",
    "PARAMETER_BLOCKS",
    "PRV_MAX_EPSILON",
    "CleanParams",
    "CompressParams",
    "DataIssueParams",
    "DataSchema",
    "DistillParams",
    "DriftParams",
    "DriftThresholds",
    "EvaluateParams",
    "FeatureParams",
    "FrugalParams",
    "IngestParams",
    "ModelParams",
    "PretrainedParams",
    "PrivacyParams",
    "QualityParams",
    "SampleParams",
    "SharedParams",
    "SplitParams",
    "Strict",
    "TemporalSplit",
    "TrackingParams",
    "TrainParams",
    "WeakLabelParams",
    "deep_merge",
    "load_project_parameters",
    "parse_params",
    "register_params",
    "root_model",
    "validate_parameters",
]
